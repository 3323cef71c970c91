"""Lottery tickets: iterative magnitude pruning with rewinding (Frankle & Carbin 2019; Frankle et al. 2020).

The experiment loop (train dense, then per level prune ``p`` of the remaining weights, rewind the
survivors to ``θ_0`` or ``θ_k``, train again) with its random controls at every level (re-initialised
weights under the ticket's mask; a random mask of the same sparsity), built from the pruning masks
and the one training loop. Each level is written atomically and a killed run resumes at the first
unfinished level. Importing this package registers the ``lottery`` technique, so a recipe can run
``lottery`` then ``quantize``.
"""

from torchslim.lottery.config import LotteryConfig
from torchslim.lottery.curves import curve_data, curve_png, curve_table, render_table
from torchslim.lottery.experiment import LotteryOutcome, run_lottery
from torchslim.lottery.masking import level_masks, prunable_layers, random_masks
from torchslim.lottery.rewind import RewindCapture, RewindPoint
from torchslim.lottery.technique import LotteryResult, lottery, lottery_step

__all__ = [
    "LotteryConfig",
    "LotteryOutcome",
    "LotteryResult",
    "RewindCapture",
    "RewindPoint",
    "curve_data",
    "curve_png",
    "curve_table",
    "level_masks",
    "lottery",
    "lottery_step",
    "prunable_layers",
    "random_masks",
    "render_table",
    "run_lottery",
]
