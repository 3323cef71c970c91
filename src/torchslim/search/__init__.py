"""Automated compression: a target in, per-layer choices by a multi-objective optuna study, the Pareto front out.

* :class:`Target` (target.py): size / latency / energy / MACs bounds relative to fp32 and an accuracy
  (or cosine) budget; :func:`parse_target` reads the command-line form ``size=15x``.
* sensitivity first: :func:`bit_sensitivity` (bits.py) next to the pruning curves of
  :func:`torchslim.pruning.sensitivity` set each layer's range (space.py, :class:`SearchSpace`).
* :func:`search` (run.py): an optuna study over whole recipes (study.py: SQLite or PostgreSQL,
  budgets, resume), trials measured on the deployment runtime (evaluate.py, trial.py), the best
  model saved after every trial, the chosen recipe, Pareto plots and the reason (report.py).
"""

from torchslim.search.bits import BitSensitivity, bit_sensitivity
from torchslim.search.report import SearchResult, pareto_front
from torchslim.search.run import SearchOptions, recipe_for_target, search
from torchslim.search.space import SearchSpace, build_space
from torchslim.search.target import Target, parse_target

__all__ = [
    "BitSensitivity",
    "SearchOptions",
    "SearchResult",
    "SearchSpace",
    "Target",
    "bit_sensitivity",
    "build_space",
    "pareto_front",
    "parse_target",
    "recipe_for_target",
    "search",
]
