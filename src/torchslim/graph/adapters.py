"""What the dependency graph needs to know about layer types and models it was not written for.

* Hugging Face's GPT-2-style ``Conv1D`` (a linear layer whose weight is stored transposed,
  ``(in, out)``) gets its own Torch-Pruning pruner, so it is pruned like ``nn.Linear`` and starts
  channel groups like one.
* A model whose forward returns a key/value cache (decoders with ``config.use_cache``) is traced
  with the cache off: the cache is an extra output whose tensors are the attention heads, and
  Torch-Pruning cannot trace through the cache object.
* A time limit on the dependency search (:func:`deadline`), so a graph whose coupling search
  explodes ends in a typed error naming the layer it was on instead of a hang.
* A concatenation whose input sizes Torch-Pruning cannot infer (:func:`tolerant_concat_sizes`)
  couples its inputs index by index instead of failing the whole trace.
"""

from __future__ import annotations

import contextlib
import functools
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from torchslim.core.errors import ModelError

ROOT_TYPES: tuple[type[nn.Module], ...] = (nn.modules.conv._ConvNd, nn.Linear)
"""Layer types whose output channels start a group (the layers channel pruning shrinks)."""


def _tp() -> Any:
    try:
        import torch_pruning
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise ModelError("Structured pruning needs the 'torch-pruning' package (pip install torch-pruning).") from exc
    return torch_pruning


def conv1d_type() -> type[nn.Module] | None:
    """Hugging Face's ``Conv1D`` class when `transformers` is already imported (never imported here)."""
    utils = sys.modules.get("transformers.pytorch_utils")
    cls = getattr(utils, "Conv1D", None) if utils is not None else None
    return cls if isinstance(cls, type) and issubclass(cls, nn.Module) else None


def root_types(model: nn.Module | None = None) -> tuple[type[nn.Module], ...]:
    """:data:`ROOT_TYPES` plus ``Conv1D`` when `model` (or, without a model, the process) uses it."""
    conv1d = conv1d_type()
    if conv1d is None:
        return ROOT_TYPES
    if model is not None and not any(isinstance(m, conv1d) for m in model.modules()):
        return ROOT_TYPES
    return (*ROOT_TYPES, conv1d)


@functools.cache
def _conv1d_pruner_class() -> type:
    base: Any = _tp().pruner.function.BasePruningFunc

    class Conv1DPruner(base):  # type: ignore[misc]  # reason: the base class comes from untyped Torch-Pruning at run time
        """Torch-Pruning pruner for ``Conv1D``: weight ``(in, out)``, bias ``(out,)``, ``nf`` = out."""

        def prune_out_channels(self, layer: Any, idxs: list[int]) -> Any:
            keep = sorted(set(range(int(layer.weight.shape[1]))) - set(idxs))
            layer.weight = self._prune_parameter_and_grad(layer.weight, keep, 1)
            if getattr(layer, "bias", None) is not None:
                layer.bias = self._prune_parameter_and_grad(layer.bias, keep, 0)
            layer.nf = len(keep)
            return layer

        def prune_in_channels(self, layer: Any, idxs: list[int]) -> Any:
            keep = sorted(set(range(int(layer.weight.shape[0]))) - set(idxs))
            layer.weight = self._prune_parameter_and_grad(layer.weight, keep, 0)
            if hasattr(layer, "nx"):
                layer.nx = len(keep)
            return layer

        def get_out_channels(self, layer: Any) -> int:
            return int(layer.weight.shape[1])

        def get_in_channels(self, layer: Any) -> int:
            return int(layer.weight.shape[0])

    return Conv1DPruner


@functools.cache
def conv1d_pruner() -> Any:
    """The one ``Conv1DPruner`` instance (Torch-Pruning recognises pruning functions by identity)."""
    return _conv1d_pruner_class()()


def custom_pruners(model: nn.Module) -> dict[Any, Any]:
    """Pruners the dependency graph must be given for `model`'s layer types (``Conv1D``)."""
    conv1d = conv1d_type()
    if conv1d is not None and any(isinstance(m, conv1d) for m in model.modules()):
        return {conv1d: conv1d_pruner()}
    return {}


def replay_pruners() -> dict[str, Any]:
    """Every pruner a recorded channel cut may name, by class name (Torch-Pruning's and ours)."""
    tp = _tp()
    found = {type(p).__name__: p for p in tp.pruner.function.PrunerBox.values() if p is not None}
    found["Conv1DPruner"] = conv1d_pruner()
    return found


@contextlib.contextmanager
def without_cache(model: nn.Module) -> Iterator[bool]:
    """Turn off ``use_cache`` on every Hugging Face config of `model` for the block; yields whether
    any was on (the caller says so in its report)."""
    changed: list[Any] = []
    seen: set[int] = set()
    for module in model.modules():
        config = getattr(module, "config", None)
        if config is None or id(config) in seen:
            continue
        seen.add(id(config))
        if getattr(config, "use_cache", False) is True:
            config.use_cache = False
            changed.append(config)
    try:
        yield bool(changed)
    finally:
        for config in changed:
            config.use_cache = True


def no_cache_input(example_input: Any) -> Any:
    """`example_input` with an explicit ``use_cache=True`` keyword turned off."""
    if isinstance(example_input, dict) and example_input.get("use_cache") is True:
        return {**example_input, "use_cache": False}
    return example_input


class SearchTimeout(Exception):
    """Raised inside the dependency search when its time limit passes."""


@contextlib.contextmanager
def deadline(seconds: float | None) -> Iterator[float]:
    """A time limit for the block: yields the absolute end time (``time.monotonic()``) that loops
    check between steps; in the main thread a timer also interrupts a single step that runs past it
    (raising :class:`SearchTimeout`). ``None``: no limit."""
    if seconds is None or seconds <= 0:
        yield float("inf")
        return
    end = time.monotonic() + seconds
    if threading.current_thread() is not threading.main_thread():
        yield end
        return

    def _expire(_signum: int, _frame: Any) -> None:
        raise SearchTimeout(f"over {seconds:g} s")

    old = signal.signal(signal.SIGALRM, _expire)
    previous = signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield end
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        if previous[0] > 0:  # an outer timer was running: give it back what is left
            signal.setitimer(signal.ITIMER_REAL, max(previous[0] - (time.monotonic() - end + seconds), 1e-3))


@contextlib.contextmanager
def tolerant_concat_sizes(unmapped: list[str]) -> Iterator[None]:
    """For the block (a graph's build), a ``torch.cat`` whose per-input channel counts
    Torch-Pruning's shape inference cannot work out is left without an index mapping (its inputs
    are coupled index by index, as for an addition) instead of raising; each such op's name is
    appended to `unmapped`.

    The case this is for: a class token split off and concatenated back along the token dimension
    (CvT's ``torch.split(x, [1, h * w], 1)`` ... ``torch.cat((cls, x), 1)``). Torch-Pruning 1.6
    takes dimension 1 for the channel dimension and indexes the split's sizes by the position of a
    consumer among all of the split's consumers, which runs past the two sizes. Index-by-index
    coupling is right for a concatenation along any dimension but the channel one; a real channel
    concatenation left unmapped would give layers mismatched widths, which channel pruning's check
    (the pruned model must run with the same output shapes) finds and leaves whole.
    """
    from torch_pruning.dependency import index_mapping

    original = index_mapping.update_concat_index_mapping

    def tolerant(graph: Any, cat_node: Any) -> None:
        try:
            original(graph, cat_node)
        except (IndexError, TypeError, KeyError):
            # stays unmapped for the graph's lifetime: Torch-Pruning redoes the mapping on every
            # group query and reads known sizes instead of inferring them again
            cat_node.enable_index_mapping = False
            cat_node.module.concat_sizes = [0] * len(cat_node.inputs)
            unmapped.append(str(getattr(cat_node, "name", "a concat")).split("(")[0])

    index_mapping.update_concat_index_mapping = tolerant
    try:
        yield
    finally:
        index_mapping.update_concat_index_mapping = original


def tensor_outputs(value: Any) -> list[torch.Tensor]:
    """Every tensor in a model output (tensor, mapping, list, tuple or a ``ModelOutput``), in order."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict) or hasattr(value, "values") and callable(value.values):
        return [t for v in value.values() for t in tensor_outputs(v)]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in tensor_outputs(v)]
    return []


def failing_op(exc: BaseException, model: nn.Module) -> str:
    """`` at <op> fed by '<layer>', ...`` for the Torch-Pruning graph node that was being processed
    when `exc` was raised (read from the traceback), or ``""``."""
    node = None
    tb = exc.__traceback__
    while tb is not None:
        candidate = tb.tb_frame.f_locals.get("node")
        if candidate is not None and hasattr(candidate, "inputs") and hasattr(candidate, "name"):
            node = candidate
        tb = tb.tb_next
    if node is None:
        return ""
    names = {id(m): n for n, m in model.named_modules()}
    found: list[str] = []
    frontier: list[Any] = list(node.inputs)
    seen: set[int] = set()
    while frontier and len(found) < 3 and len(seen) < 200:
        item = frontier.pop(0)
        if id(item) in seen:
            continue
        seen.add(id(item))
        name = names.get(id(getattr(item, "module", None)))
        if name:
            found.append(name)
        else:
            frontier.extend(getattr(item, "inputs", []))
    op = str(getattr(node, "name", "an op")).split("(")[0]
    return f" at {op}" + (" fed by " + ", ".join(repr(n) for n in found) if found else "")
