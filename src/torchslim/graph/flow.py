"""Where a layer's output goes: a ``torch.fx`` walk over pass-through operations.

Quantization asks it which convolutions feed something other than a quantized layer's input (a
residual ``Add``, a ``cat``, the model output): those need an int8 output of their own before an
int8 runtime can run them as integer kernels.
"""

from __future__ import annotations

from typing import Any

from torch import nn

PASS_THROUGH_MODULES = (
    nn.ReLU,
    nn.ReLU6,
    nn.Hardtanh,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.Flatten,
    nn.Identity,
    nn.Dropout,
)
"""Modules a value passes through unchanged in kind (order-preserving clamps, pooling, reshaping)."""

PASS_THROUGH_CALLS = frozenset(
    {
        "relu",
        "relu6",
        "hardtanh",
        "clamp",
        "flatten",
        "max_pool1d",
        "max_pool2d",
        "max_pool3d",
        "view",
        "reshape",
        "squeeze",
        "unsqueeze",
        "dropout",
    }
)
"""Functions and tensor methods, by name, that a value passes through the same way."""


def trace_layers(model: nn.Module) -> Any | None:
    """The ``torch.fx`` graph of `model` with convolutions and Linear layers as leaves, or None when
    ``torch.fx`` cannot trace it (data-dependent control flow, for instance)."""
    import torch.fx as fx

    class _Tracer(fx.Tracer):
        def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
            if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear)):
                return True
            return super().is_leaf_module(m, qualname)

    try:
        return _Tracer().trace(model)
    except Exception:  # noqa: BLE001 - any tracing failure means: no analysis
        return None


def outputs_reaching_others(model: nn.Module, producers: set[str], consumers: set[str]) -> set[str] | None:
    """The `producers` (module names) whose output reaches anything but the first input of a
    module in `consumers`, following only pass-through modules and calls (ReLU, ReLU6 / hardtanh /
    clamp, max-pooling, flatten, reshape-like, identity, dropout). Convolutions and Linear layers are traced as leaves.
    None when ``torch.fx`` cannot trace `model` (data-dependent control flow, for instance).
    """
    graph = trace_layers(model)
    if graph is None:
        return None
    modules = dict(model.named_modules())

    def feeds_only_consumers(node: Any, depth: int = 0) -> bool:
        if depth > 32 or not node.users:
            return False
        for user in node.users:
            if user.op == "call_module" and user.target in consumers and user.args and user.args[0] is node:
                continue
            passes = (user.op == "call_module" and isinstance(modules.get(user.target), PASS_THROUGH_MODULES)) or (
                user.op in ("call_function", "call_method")
                and getattr(user.target, "__name__", user.target) in PASS_THROUGH_CALLS
            )
            if not passes or not user.args or user.args[0] is not node or not feeds_only_consumers(user, depth + 1):
                return False
        return True

    return {
        str(node.target)
        for node in graph.nodes
        if node.op == "call_module" and node.target in producers and not feeds_only_consumers(node)
    }
