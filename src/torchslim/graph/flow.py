"""Where a layer's output goes: a ``torch.fx`` walk over pass-through operations.

Quantization asks it which convolutions feed something other than a quantized layer's input (a
residual ``Add``, a ``cat``, the model output): those need an int8 output of their own before an
int8 runtime can run them as integer kernels.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
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


PASS_THROUGH_GRADS = frozenset(
    {
        "ReluBackward0",
        "ReluBackward1",
        "ThresholdBackward0",
        "ThresholdBackward1",
        "HardtanhBackward0",
        "HardtanhBackward1",
        "ClampBackward1",
        "ClampMinBackward0",
        "ConstantPadNdBackward0",
        "MaxPool1DWithIndicesBackward0",
        "MaxPool2DWithIndicesBackward0",
        "MaxPool3DWithIndicesBackward0",
        "ViewBackward0",
        "ReshapeAliasBackward0",
        "UnsafeViewBackward0",
        "SqueezeBackward0",
        "SqueezeBackward1",
        "SqueezeBackward2",
        "UnsqueezeBackward0",
        "CloneBackward0",
    }
)
"""Autograd nodes (by class name) of the same pass-through operations, plus zero padding
(``pad(q(x), zero point) = q(pad(x, 0))`` exactly: 0 is a grid value of every asymmetric quantizer)."""


def _readers(roots: list[Any]) -> dict[Any, list[Any]]:
    """``{autograd node: nodes that take its output}`` over the graph behind `roots`."""
    readers: dict[Any, list[Any]] = {}
    seen: set[Any] = set()
    stack = list(roots)
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        for parent, _ in node.next_functions:
            if parent is not None:
                readers.setdefault(parent, []).append(node)
                stack.append(parent)
    return readers


def _inner_nodes(out: Any, entry: Any) -> set[Any]:
    """The autograd nodes of one layer call: from its output's node back to (not into) its input's."""
    inner: set[Any] = set()
    stack = [out]
    while stack:
        node = stack.pop()
        if node is None or node is entry or node in inner or type(node).__name__ == "AccumulateGrad":
            continue
        inner.add(node)
        stack.extend(parent for parent, _ in node.next_functions)
    return inner


def _with_grad(example_input: Any) -> tuple[Any, bool]:
    """`example_input` with its float tensors as leaves that require grad, and whether there were none
    (then the parameters must require grad instead: token ids, say)."""
    found = False

    def leaf(value: Any) -> Any:
        nonlocal found
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            found = True
            return value.detach().requires_grad_(True)
        if isinstance(value, Mapping):
            return {k: leaf(v) for k, v in value.items()}
        if isinstance(value, (tuple, list)):
            return type(value)(leaf(v) for v in value)
        return value

    inputs = leaf(example_input)
    return inputs, not found


def _record_calls(model: nn.Module, names: set[str]) -> tuple[dict[str, Any], dict[str, Any], list[Any]]:
    """Forward hooks recording, per module of `names`, the autograd node of its first call's first
    input and of its output; returns both maps (filled by the next forward) and the hook handles."""
    modules = dict(model.named_modules())
    out_node: dict[str, Any] = {}
    in_node: dict[str, Any] = {}
    handles = []
    for name in names:
        module = modules.get(name)
        if module is None:
            continue

        def pre(mod: nn.Module, args: tuple[Any, ...], name: str = name) -> None:
            if args and isinstance(args[0], torch.Tensor):
                in_node.setdefault(name, args[0].grad_fn)

        def post(mod: nn.Module, args: tuple[Any, ...], output: Any, name: str = name) -> None:
            if isinstance(output, torch.Tensor):
                out_node.setdefault(name, output.grad_fn)

        handles += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
    return in_node, out_node, handles


def outputs_reaching_others_autograd(
    model: nn.Module, example_input: Any, producers: set[str], consumers: set[str]
) -> set[str]:
    """:func:`outputs_reaching_others` for models ``torch.fx`` cannot trace: the same walk over
    the autograd graph of one forward pass on `example_input` (a tensor, tuple or mapping of inputs).

    Each layer's call is recognised by forward hooks (its output's and its first input's autograd
    node); a producer whose output no autograd node reads (the model's output) reaches "others".
    The model runs in eval mode with gradients on, and is left as it was. Gradients flow from the
    float inputs with the parameters not requiring grad, so a value the model caches from its
    parameters (LeViT's attention biases) does not require grad afterwards; a model without float
    inputs (token ids) runs as a copy whose parameters require grad.
    """
    from torchslim.core.batches import call_model
    from torchslim.graph.adapters import tensor_outputs

    inputs, needs_parameters = _with_grad(example_input)
    if needs_parameters:  # gradients must start at the parameters: work on a copy
        model = copy.deepcopy(model)
    in_node, out_node, handles = _record_calls(model, producers | consumers)
    flags = {p: p.requires_grad for p in model.parameters()}
    was_training = model.training
    try:
        model.eval()
        for p in flags:
            p.requires_grad_(needs_parameters)
        with torch.enable_grad():
            outputs = tensor_outputs(call_model(model, inputs))
            readers = _readers([t.grad_fn for t in outputs if t.grad_fn is not None])
            entries: dict[Any, list[set[Any]]] = {}
            for name in consumers:
                if name in out_node and in_node.get(name) is not None:
                    entries.setdefault(in_node[name], []).append(_inner_nodes(out_node[name], in_node[name]))

            def feeds_only_consumers(node: Any, depth: int = 0) -> bool:
                users = readers.get(node, [])
                if depth > 32 or not users:
                    return False
                for user in users:
                    if any(user in inner for inner in entries.get(node, [])):
                        continue
                    first = user.next_functions[0][0] if user.next_functions else None
                    if type(user).__name__ not in PASS_THROUGH_GRADS or first is not node:
                        return False
                    if not feeds_only_consumers(user, depth + 1):
                        return False
                return True

            return {name for name in producers if name in out_node and not feeds_only_consumers(out_node[name])}
    finally:
        for handle in handles:
            handle.remove()
        for p, flag in flags.items():
            p.requires_grad_(flag)
        model.train(was_training)
