"""Fold inference-mode BatchNorm into the convolution before it.

For a convolution ``y = W * x + b`` followed by BatchNorm in eval mode
``z = gamma * (y - mu) / sqrt(var + eps) + beta``, the pair equals one convolution with

    W' = W * s[:, None, ...],   b' = (b - mu) * s + beta,   s = gamma / sqrt(var + eps)

(Ioffe & Szegedy 2015 for BatchNorm; the folding is the standard step before integer inference,
Jacob et al. 2018, "Quantization and training of neural networks for efficient integer-arithmetic-
only inference", section 3.2). The BatchNorm becomes ``nn.Identity``; outputs agree to float
rounding. Only pairs where the convolution's output feeds nothing but the BatchNorm are folded.

Folding changes the state-dict keys, so it records a plan entry (kind ``fold_batchnorm``) that
:func:`replay_fold_batchnorm` replays when an artifact is loaded.
"""

from __future__ import annotations

import copy
from typing import Any, cast

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.fusion import fuse_conv_bn_weights

from torchslim.core.errors import ModelError
from torchslim.core.plans import append_plan_entry, register_plan_replay
from torchslim.graph.surgery import get_module, set_module

PLAN_KIND = "fold_batchnorm"


def _pairs_fx(model: nn.Module) -> list[tuple[str, str]]:
    import torch.fx as fx

    class _Tracer(fx.Tracer):
        def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
            if isinstance(m, (nn.modules.conv._ConvNd, nn.modules.batchnorm._BatchNorm)):
                return True
            return super().is_leaf_module(m, qualname)

    try:
        graph = _Tracer().trace(model)
    except Exception as exc:  # noqa: BLE001
        raise ModelError(
            f"fold_batchnorm: {type(model).__name__} cannot be traced by torch.fx ({type(exc).__name__}: {exc}); "
            "pass example_input=... to trace it through autograd instead."
        ) from exc
    modules = dict(model.named_modules())
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules.get(node.target), nn.modules.batchnorm._BatchNorm):
            continue
        src = node.args[0] if node.args else None
        if not isinstance(src, fx.Node) or src.op != "call_module":
            continue
        if isinstance(modules.get(src.target), nn.modules.conv._ConvNd) and len(src.users) == 1:
            pairs.append((str(src.target), str(node.target)))
    return pairs


def _pairs_autograd(model: nn.Module, example_input: Any) -> list[tuple[str, str]]:
    from torchslim.graph.dependency import ChannelGraph

    graph = ChannelGraph(model, example_input)
    pairs = []
    for module, node in graph.dg.module2node.items():
        if not isinstance(module, nn.modules.batchnorm._BatchNorm) or len(node.inputs) != 1:
            continue
        src = node.inputs[0]
        if isinstance(src.module, nn.modules.conv._ConvNd) and len(src.outputs) == 1:
            conv_name, bn_name = graph.name_of(src.module), graph.name_of(module)
            if conv_name and bn_name:
                pairs.append((conv_name, bn_name))
    return pairs


def foldable_pairs(model: nn.Module, example_input: Any = None) -> list[tuple[str, str]]:
    """``(conv name, bn name)`` pairs that :func:`fold_batchnorm` would fold, in model order.

    With `example_input` the model is traced through autograd (works for any model that runs);
    without, through ``torch.fx`` symbolic tracing.
    """
    raw = _pairs_autograd(model, example_input) if example_input is not None else _pairs_fx(model)
    order = {n: i for i, (n, _) in enumerate(model.named_modules())}
    out = []
    for conv_name, bn_name in sorted(set(raw), key=lambda p: order.get(p[0], 0)):
        conv, bn = get_module(model, conv_name), get_module(model, bn_name)
        if getattr(conv, "transposed", False) or parametrize.is_parametrized(conv):
            continue
        if bn.running_mean is None or bn.running_var is None or bn.num_features != conv.out_channels:
            continue
        out.append((conv_name, bn_name))
    return out


def fold_batchnorm(model: nn.Module, example_input: Any = None, *, inplace: bool = False) -> nn.Module:
    """Fold every eval-mode BatchNorm into the convolution that feeds it; return the folded model.

    Works on a copy unless `inplace`. BatchNorms without running statistics, after transposed or
    masked (parametrized) convolutions, or after a convolution whose output is also used elsewhere
    are left alone. The returned model is in eval mode and carries a ``fold_batchnorm`` plan entry
    (appended to its plan, :func:`torchslim.core.plans.model_plan`) listing the folded pairs.
    """
    pairs = foldable_pairs(model, example_input)
    if not inplace:
        model = copy.deepcopy(model)
    model.eval()
    added_bias: list[str] = []
    with torch.no_grad():
        for conv_name, bn_name in pairs:
            conv = cast(nn.modules.conv._ConvNd, get_module(model, conv_name))
            bn = cast(nn.modules.batchnorm._BatchNorm, get_module(model, bn_name))
            if conv.bias is None:
                added_bias.append(conv_name)
            weight, bias = fuse_conv_bn_weights(
                conv.weight,
                conv.bias,
                cast(torch.Tensor, bn.running_mean),  # foldable pairs have running statistics
                cast(torch.Tensor, bn.running_var),
                bn.eps,
                bn.weight,
                bn.bias,
            )
            conv.weight = weight
            conv.bias = bias
            set_module(model, bn_name, nn.Identity())
    if pairs:
        append_plan_entry(model, {"kind": PLAN_KIND, "pairs": [list(p) for p in pairs], "bias_added": added_bias})
    return model


@register_plan_replay(PLAN_KIND)
def replay_fold_batchnorm(model: nn.Module, entry: dict[str, Any]) -> nn.Module:
    """Rebuild the folded architecture (weights come from the artifact): add the biases folding
    created and replace each folded BatchNorm by ``nn.Identity``."""
    added = set(entry.get("bias_added") or [])
    for pair in entry.get("pairs") or []:
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise ModelError(f"fold_batchnorm plan entry: bad pair {pair!r}.")
        conv_name, bn_name = str(pair[0]), str(pair[1])
        conv = get_module(model, conv_name)
        if not isinstance(conv, nn.modules.conv._ConvNd):
            raise ModelError(f"fold_batchnorm plan entry: {conv_name!r} is a {type(conv).__name__}, not a convolution.")
        if conv_name in added and conv.bias is None:
            conv.bias = nn.Parameter(torch.zeros(conv.out_channels, dtype=conv.weight.dtype, device=conv.weight.device))
        set_module(model, bn_name, nn.Identity())
    return model
