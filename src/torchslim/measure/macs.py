"""Multiply-accumulate counts from ``torch.utils.flop_counter.FlopCounterMode``.

FlopCounterMode counts the FLOPs of matrix products, convolutions and attention kernels at the
ATen level (so any module that ends in ``mm``/``addmm``/``bmm``/``convolution``/SDPA is counted,
without a hand-written per-module table; CPU's fused attention kernel, which its registry misses,
is added with the registry's own SDPA formula). Each of those FLOP counts is ``2 x`` the number of
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
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from torchslim.measure._util import (
    call_model,
    display_name,
    eval_mode,
    model_device,
    to_device,
)


@dataclasses.dataclass(frozen=True)
class MacCount:
    """Total MACs of one forward pass on the given input, and each module's own share."""

    total: int
    per_layer: dict[str, int]


def _tracker_keys(model: nn.Module) -> dict[int, str]:
    """The key FlopCounterMode's ``ModuleTracker`` gives each module: ``<RootClass>.<child>...``,
    assigned depth-first through ``named_children`` (a module shared by two parents keeps the
    name it was given last)."""
    keys: dict[int, str] = {id(model): type(model).__name__}
    seen: set[int] = set()

    def visit(module: nn.Module) -> None:
        if id(module) in seen:
            return
        seen.add(id(module))
        for child_name, child in module.named_children():
            keys[id(child)] = f"{keys[id(module)]}.{child_name}"
            visit(child)

    visit(model)
    return keys


def _own_macs(model: nn.Module, counts: dict[str, Any]) -> dict[str, int]:
    """Map FlopCounterMode's inclusive per-module FLOPs to each module's own MACs.

    A module's own FLOPs are its inclusive FLOPs minus those of its nearest *called* descendants
    (containers such as ``ModuleList`` are never called, so their children are looked through). A
    parametrization's work (computing the effective weight) stays with the module that owns the
    parametrized tensor. A module shared by two different parents is attributed by object, so its
    calls are all counted under its first name; the parents' own shares are then approximate
    (clamped at zero) while the total stays exact.
    """
    keys = _tracker_keys(model)

    def inclusive(module: nn.Module) -> int:
        per_op = counts.get(keys.get(id(module), ""))
        return int(sum(per_op.values())) if per_op else 0

    def nearest_called(module: nn.Module) -> int:
        total = 0
        for child_name, child in module.named_children():
            if child_name == "parametrizations" and isinstance(child, nn.ModuleDict):
                continue  # the effective-weight computation belongs to the owner
            flops = inclusive(child)
            total += flops if flops > 0 else nearest_called(child)
        return total

    own: dict[str, int] = {}
    skip: list[str] = []
    for name, module in model.named_modules():
        if any(name.startswith(prefix) for prefix in skip):
            continue
        if isinstance(module, nn.ModuleDict) and name.rsplit(".", 1)[-1] == "parametrizations":
            skip.append(name + ".")
            continue
        flops = inclusive(module)
        if flops <= 0:
            continue
        flops -= nearest_called(module)
        if flops > 0:
            own[display_name(name)] = flops // 2
    return own


def _extra_formulas() -> dict[Any, Any]:
    """Ops FlopCounterMode's registry misses. On CPU, ``scaled_dot_product_attention`` runs as
    ``aten._scaled_dot_product_flash_attention_for_cpu``, which the registry does not list (torch
    2.13), so attention's two batched products would count as zero; it gets the registry's own SDPA
    formula (``2 * b * h * s_q * s_k * (d_qk + d_v)`` FLOPs, causal masks not discounted)."""
    extra: dict[Any, Any] = {}
    op = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if op is not None:
        extra[op] = _sdpa_cpu_flops
    return extra


def _sdpa_cpu_flops(
    query_shape: Any, key_shape: Any, value_shape: Any, *args: Any, out_shape: Any = None, **kwargs: Any
) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def trace_macs(
    model: nn.Module,
    example_input: Any,
) -> tuple[MacCount, Any]:
    """Run one forward pass under FlopCounterMode (eval mode, no grad) and return the MAC count and
    the model output. Internal building block shared with the energy estimate."""
    example_input = to_device(example_input, model_device(model))
    with eval_mode(model), torch.no_grad():
        counter = FlopCounterMode(display=False, custom_mapping=_extra_formulas())
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
