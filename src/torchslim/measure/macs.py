"""Multiply-accumulate counts from ``torch.utils.flop_counter.FlopCounterMode``.

FlopCounterMode counts the FLOPs of matrix products, convolutions and attention kernels at the
ATen level (so any module that ends in ``mm``/``addmm``/``bmm``/``convolution``/SDPA is counted,
without a hand-written per-module table). Each of those FLOP counts is ``2 x`` the number of
multiply-accumulates, so

    MACs = FLOPs / 2.

Per-layer attribution uses FlopCounterMode's per-module breakdown: a module's *own* MACs are its
inclusive count minus the inclusive counts of its direct children, so leaf modules (Linear,
Conv2d) get their whole count and a module that does a product in its own ``forward`` (e.g. an
attention block's ``q @ k.T``) gets exactly that product. Work done in the top module's own
forward is reported under ``"(root)"``. The per-layer values sum to the total. A module that is
called several times (shared weights) accumulates all its calls under its first name.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from torchslim.measure._util import (
    call_model,
    display_name,
    eval_mode,
    is_parametrization_list,
    model_device,
    to_device,
)


@dataclasses.dataclass(frozen=True)
class MacCount:
    """Total MACs of one forward pass on the given input, and each module's own share."""

    total: int
    per_layer: dict[str, int]


def _own_macs(model: nn.Module, counts: dict[str, Any]) -> dict[str, int]:
    """Map FlopCounterMode's inclusive per-module FLOPs to each module's own MACs."""
    root_key = type(model).__name__

    def key_of(qualified: str) -> str:
        return root_key if not qualified else f"{root_key}.{qualified}"

    inclusive: dict[str, int] = {}
    for name, _module in model.named_modules():
        per_op = counts.get(key_of(name))
        inclusive[name] = int(sum(per_op.values())) if per_op else 0
    own: dict[str, int] = {}
    for name, module in model.named_modules():
        if is_parametrization_list(module) or inclusive[name] == 0:
            continue
        children = sum(inclusive.get(f"{name}.{c}" if name else c, 0) for c, _ in module.named_children())
        flops = inclusive[name] - children
        if flops > 0:
            own[display_name(name)] = flops // 2
    return own


def trace_macs(
    model: nn.Module,
    example_input: Any,
    *,
    extra: Callable[[], Any] | None = None,
) -> tuple[MacCount, Any]:
    """Run one forward pass under FlopCounterMode (eval mode, no grad) and return the MAC count and
    the model output. Internal building block shared with the energy estimate."""
    example_input = to_device(example_input, model_device(model))
    with eval_mode(model), torch.no_grad():
        counter = FlopCounterMode(display=False, depth=None)
        with counter:
            output = call_model(model, example_input)
        total_flops = int(counter.get_total_flops())
        per_layer = _own_macs(model, counter.get_flop_counts())
    return MacCount(total=total_flops // 2, per_layer=per_layer), output


def count_macs(model: nn.Module, example_input: Any) -> MacCount:
    """Multiply-accumulates of ``model(example_input)`` (the whole batch given), total and per layer.

    `example_input` is a Tensor (``model(x)``), a dict of tensors (``model(**x)``), a tuple of tensors
    (``model(*x)``) or a list of str for a model with ``tokenize``. Runs in eval mode under
    ``torch.no_grad`` and restores every module's previous mode. Example: ``Linear(784, 300)`` on a
    batch of one costs ``784 * 300 = 235,200`` MACs; ``Conv2d(c_in, c_out, k)`` costs
    ``c_out * h_out * w_out * (c_in / groups) * k * k`` per sample.
    """
    macs, _ = trace_macs(model, example_input)
    return macs
