"""Run one technique on one zoo architecture and classify what happened.

A cell's status is ``ok`` (the technique ran and did what it says: pruning reduced the measured
MACs with the output shapes unchanged; quantize ran; the ONNX export matched PyTorch), ``refused``
(a typed :class:`TorchSlimError` whose message is the reason), ``unchanged`` (ran, but pruned
nothing), ``failed`` (ran, but the result is wrong: a parity mismatch, a model that no longer
runs), ``crash`` (any other exception) or ``hang`` (past the time limit).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from torchslim.core import Context, DataSplits
from torchslim.core.errors import TorchSlimError
from torchslim.graph import call_with, flat_tensors, tied_parameters
from torchslim.measure import count_macs
from torchslim.quantization.plan import SINGLE_CHANNEL_REASON

TIME_LIMIT_S = int(os.environ.get("ZOO_TIME_LIMIT", "120"))
"""Seconds one technique may take on one architecture before the cell counts as a hang (env ZOO_TIME_LIMIT)."""


class ZooTimeout(BaseException):
    """Raised by the alarm; a BaseException so that no ``except Exception`` in the library swallows it."""


@dataclasses.dataclass
class Cell:
    status: str
    detail: str = ""
    seconds: float = 0.0
    facts: dict[str, Any] = dataclasses.field(default_factory=dict)


@contextlib.contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    def _raise(_signum: int, _frame: Any) -> None:
        raise ZooTimeout(f"over {seconds} s")

    old = signal.signal(signal.SIGALRM, _raise)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def randomize_norms(model: nn.Module, example: Any, seed: int = 0) -> nn.Module:
    """BatchNorm statistics measured on the example batch (train-mode forward, as a trained model's
    would be), then scaled by random factors in [0.75, 1.25], with random affine parameters; not the
    0/1 defaults, which saturate deep random CNNs into a constant output."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms:
        return model
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in norms:
            if m.affine:
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration passes
        model.train()
        for _ in range(2):
            call_with(model, example)
        model.eval()
        for m in norms:
            m.momentum = 0.1
            assert m.running_mean is not None and m.running_var is not None
            m.running_mean.mul_(torch.rand(m.running_mean.shape, generator=g) * 0.5 + 0.75)
            m.running_var.mul_(torch.rand(m.running_var.shape, generator=g) * 0.5 + 0.75)
    return model


def run_model(model: nn.Module, example: Any) -> list[torch.Tensor]:
    with torch.no_grad():
        return [t for t in flat_tensors(call_with(model, example)) if t.is_floating_point()]


def check_nonconstant(outputs: list[torch.Tensor]) -> None:
    """The main output differs across the batch (a constant output would make every check vacuous)."""
    main = outputs[0]
    assert torch.isfinite(main).all(), "output has NaN/inf"
    assert main.float().std() > 1e-6, "output is constant"
    assert not torch.allclose(main[0], main[1]), "output does not depend on the input"


def fingerprint(model: nn.Module) -> tuple[int, float]:
    with torch.no_grad():
        params = list(model.parameters())
        return len(params), float(sum(p.double().abs().sum() for p in params))


def pruning_config(*, ratio: float = 0.5, hidden: bool = False) -> Any:
    """Channels and attention heads at `ratio`; with `hidden`, a transformer's hidden size too."""
    from torchslim.pruning import ChannelPruning

    return ChannelPruning(ratio=ratio, head_ratio=ratio, hidden_ratio=ratio if hidden else 0.0)


def prune(model: nn.Module, example: Any, *, hidden: bool = False) -> tuple[nn.Module, dict[str, Any]]:
    """50% structured pruning through the ``channel_pruning`` handler; checks the caller's model is untouched."""
    from torchslim.pruning import channel_pruning

    before = fingerprint(model)
    macs0 = count_macs(model, example).total
    shapes0 = [tuple(t.shape) for t in run_model(model, example)]
    try:
        config = pruning_config(hidden=hidden)
        outcome = channel_pruning(model, config, targets=None, context=Context(example_input=example))
    finally:
        assert fingerprint(model) == before, "the caller's model was changed"
    pruned = outcome.model
    if len(tied_parameters(pruned)) != len(tied_parameters(model)):
        raise AssertionError("tied weights were untied by pruning")
    shapes1 = [tuple(t.shape) for t in run_model(pruned, example)]
    if shapes1 != shapes0:
        raise AssertionError(f"output shapes changed {shapes0} -> {shapes1}")
    macs1 = count_macs(pruned, example).total
    facts = {
        "macs_before": macs0,
        "macs_after": macs1,
        "mac_ratio": macs1 / macs0,
        "skipped": len(outcome.skipped),
        "not_understood": len(outcome.info.get("not_understood", ())),
        "notes": list(outcome.info.get("notes", ())),
    }
    return pruned, facts


def quantize(model: nn.Module, example: Any) -> tuple[nn.Module, dict[str, Any]]:
    from torchslim.core import TECHNIQUES
    from torchslim.quantization import Quantize

    data = DataSplits(calibration=[(example, torch.zeros(2, dtype=torch.long))], name="zoo")
    config = Quantize()
    handler = TECHNIQUES.handler_for(config)
    outcome = handler(model, config, targets=None, context=Context(data=data, example_input=example))
    modules = dict(model.named_modules())
    by_choice = [
        name
        for name, why in outcome.skipped.items()
        if why == SINGLE_CHANNEL_REASON and isinstance(modules.get(name), nn.Conv2d)
    ]
    return outcome.model, {"layers": len(outcome.layers), "float_convs_by_choice": len(by_choice)}


def export(model: nn.Module, example: Any, *, kernels: bool = False) -> dict[str, Any]:
    """Export + parity; with `kernels`, also the convolutions in onnxruntime's optimized graph vs the
    integer ones among them (QLinearConv / ConvInteger)."""
    from torchslim.deploy import check_parity, export_onnx, optimized_op_counts

    facts: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        export_onnx(model, path, example)
        parity = check_parity(model, path, example)
        if kernels:
            ops = optimized_op_counts(path)
            # convolution nodes of any kind (Conv, FusedConv, ...): a shared module is counted per call
            facts["conv_layers"] = sum(n for op, n in ops.items() if "Conv" in op and "Transpose" not in op)
            facts["integer_convs"] = ops.get("QLinearConv", 0) + ops.get("ConvInteger", 0)
    if not parity.ok:
        close = ""
        if parity.quantized and parity.cosine is not None:
            mean = f"{parity.mean_diff_in_steps:+.2f}" if parity.mean_diff_in_steps is not None else "?"
            close = f"; not close: cosine {parity.cosine:.5f}, top-1 {parity.top1_agreement}, mean {mean} steps"
        raise ParityFailure(f"max |diff| {parity.max_abs_diff:.3g} > tolerance {parity.tolerance:.3g}{close}")
    return {"max_abs_diff": parity.max_abs_diff, **facts}


class ParityFailure(Exception):
    """The exported model ran but does not match PyTorch."""


def _classify(exc: BaseException) -> Cell:
    if isinstance(exc, ZooTimeout):
        return Cell("hang", str(exc))
    if isinstance(exc, TorchSlimError):
        return Cell("refused", f"{type(exc).__name__}: {exc}")
    if isinstance(exc, (AssertionError, ParityFailure)):
        return Cell("failed", f"{type(exc).__name__}: {exc}")
    where = traceback.extract_tb(exc.__traceback__)[-1]
    return Cell("crash", f"{type(exc).__name__}: {exc} ({Path(where.filename).name}:{where.lineno})")


def run_cell(fn: Callable[[], dict[str, Any]], *, limit: int = TIME_LIMIT_S) -> Cell:
    start = time.perf_counter()
    try:
        with time_limit(limit):
            facts = fn()
    except BaseException as exc:  # noqa: BLE001 - every outcome is recorded, none escapes the zoo
        if isinstance(exc, KeyboardInterrupt):
            raise
        cell = _classify(exc)
    else:
        status = "ok"
        if "mac_ratio" in facts and facts["mac_ratio"] >= 1.0:
            status = "unchanged"
        cell = Cell(status, "", facts=facts)
    cell.seconds = time.perf_counter() - start
    return cell
