"""Output quantization for XNNPACK: the ``torch.export`` counterpart of the ONNX QDQ propagation.

XNNPACK's static int8 convolution, linear layer and add need their output quantized directly after
them (``dequantize -> conv -> [ReLU] -> quantize``), while torchslim quantizes a value where a
quantized layer reads it: after ReLU, max-pooling, padding and reshapes. :func:`propagate_output_qdq`
therefore copies the reading quantizer to the producer's output, and after each op on the way,
exactly as :func:`torchslim.deploy.onnxruntime.graph_passes.propagate_output_qdq` does for
onnxruntime, and with the same argument for why no value changes: a round-to-nearest quantizer is
monotone, so it commutes with max-pooling, ReLU / clamping and reshapes, zero padding pads with a
grid value, and quantizing a value already on the grid with the same quantizer returns it.

The graph is an ``ExportedProgram``'s module (``ep.module()``); the caller exports it again.
"""

from __future__ import annotations

from typing import Any

import torch

_aten = torch.ops.aten
TRANSPARENT = frozenset(
    {
        _aten.relu.default,
        _aten.relu_.default,
        _aten.hardtanh.default,
        _aten.hardtanh_.default,
        _aten.clamp.default,
        _aten.max_pool2d.default,
        _aten.flatten.using_ints,
        _aten.view.default,
        _aten.reshape.default,
        _aten.permute.default,
        _aten.squeeze.dim,
        _aten.unsqueeze.default,
        _aten.contiguous.default,
        _aten.dropout.default,
        _aten.clone.default,
    }
)
"""Ops a per-tensor quantizer commutes with (plus constant-zero padding, see :func:`_transparent`)."""
FUSED_ACTIVATIONS = frozenset(
    {_aten.relu.default, _aten.relu_.default, _aten.hardtanh.default, _aten.hardtanh_.default}
)
"""Activations XNNPACK fuses into the op before them (its output quantizer then follows them)."""
COMPUTE = frozenset({_aten.conv2d.default, _aten.conv1d.default, _aten.linear.default})
INT8_HEADS = frozenset({_aten.add.Tensor, _aten.adaptive_avg_pool2d.default, _aten.avg_pool2d.default, _aten.mean.dim})
"""Ops XNNPACK runs on int8 when every tensor input is dequantized and the output is quantized."""


def _decomposed() -> Any:
    """PyTorch's ``quantized_decomposed`` operators (registered by importing their library)."""
    from torch.ao.quantization.fx._decomposed import quantized_decomposed_lib  # noqa: F401

    return torch.ops.quantized_decomposed


def is_quantize_node(node: Any) -> bool:
    """True for an FX node calling ``quantized_decomposed.quantize_per_tensor.default``."""
    return node.op == "call_function" and node.target is _decomposed().quantize_per_tensor.default


def is_dequantize_node(node: Any) -> bool:
    """True for an FX node calling any ``quantized_decomposed.dequantize_*`` operator."""
    if node.op != "call_function":
        return False
    name = str(getattr(node.target, "_name", "") or node.target)
    return "quantized_decomposed" in name and "dequantize" in name


def insert_qdq_after(graph: Any, node: Any, qparams: tuple[Any, ...]) -> Any:
    """Insert ``quantize -> dequantize`` with ``qparams = (scale, zero_point, qmin, qmax, dtype)`` after FX `node`;
    every other reader of `node` reads the dequantized value instead. Returns the dequantize node."""
    ops = _decomposed()
    readers = list(node.users)
    with graph.inserting_after(node):
        q = graph.call_function(ops.quantize_per_tensor.default, (node, *qparams))
    with graph.inserting_after(q):
        dq = graph.call_function(ops.dequantize_per_tensor.default, (q, *qparams))
    for reader in readers:
        reader.replace_input_with(node, dq)
    return dq


def _transparent(node: Any) -> bool:
    if node.op != "call_function":
        return False
    if node.target in TRANSPARENT:
        return True
    if node.target is _aten.constant_pad_nd.default:
        value = node.args[2] if len(node.args) > 2 else node.kwargs.get("value", 0)
        return float(value) == 0.0
    return False


def _head(node: Any) -> bool:
    """True when `node` becomes an int8 kernel once its output is quantized."""
    if node.op != "call_function":
        return False
    tensors = [a for a in node.args if isinstance(a, torch.fx.Node)]
    if node.target in COMPUTE:
        return len(tensors) >= 2 and all(is_dequantize_node(t) for t in tensors[:2])
    if node.target in INT8_HEADS:
        return bool(tensors) and all(is_dequantize_node(t) for t in tensors)
    return False


def _insert_points(q: Any) -> list[Any]:
    """The nodes after which copies of quantize node `q` (and its dequantize) go, in graph order;
    empty: none (no int8 head behind `q`, or nothing between them but a fused activation)."""
    first = q.args[0]
    cur = first
    chain: list[Any] = []  # from the op feeding `q` back towards the head
    while isinstance(cur, torch.fx.Node):
        users = list(cur.users)
        # several readers are fine where all of them quantize it the same way
        same = all(is_quantize_node(u) and tuple(u.args[1:]) == tuple(q.args[1:]) for u in users)
        if len(users) != 1 and not (cur is first and same):
            return []
        if _transparent(cur):
            chain.append(cur)
            cur = cur.args[0]
            continue
        if not _head(cur) or not chain:
            return []
        start = cur
        if chain[-1].target in FUSED_ACTIVATIONS:
            start = chain.pop()  # XNNPACK fuses it: the first quantizer goes after it
        return [start, *reversed(chain[1:])] if chain else []
    return []


def _output_quantized(node: Any) -> bool:
    """True when `node`'s only reader is a quantize node, or a fused activation whose only reader is."""
    users = list(node.users)
    if len(users) == 1 and users[0].op == "call_function" and users[0].target in FUSED_ACTIVATIONS:
        users = list(users[0].users)
    return len(users) == 1 and is_quantize_node(users[0])


def _dynamic_input(node: Any) -> bool:
    """True when `node`'s input is dequantized per token (XNNPACK's dynamic int8 pattern)."""
    source = node.args[0] if node.args else None
    return (
        isinstance(source, torch.fx.Node)
        and source.op == "call_function"
        and source.target is _decomposed().dequantize_per_token.default
    )


def _constant(module: torch.fx.GraphModule, node: Any) -> Any:
    """The value of a ``get_attr`` node, or `node` itself when it is not an FX node."""
    if not isinstance(node, torch.fx.Node):
        return node
    if node.op != "get_attr":
        raise ValueError(f"{node.name} is not a constant")
    value = module
    for part in str(node.target).split("."):
        value = getattr(value, part)
    return value


def float_weights_where_unfused(module: torch.fx.GraphModule) -> int:
    """Give a convolution or linear layer whose output is not quantized (a classifier with float
    logits, a branch into a float op) its weight as a float constant instead of a dequantize node;
    in place, returns how many. XNNPACK's static int8 kernels need a quantized output, so such a
    layer runs as its float kernel either way; with a dequantize node the weight would be
    dequantized by a portable kernel at every call. Same values."""
    graph = module.graph
    changed = 0
    for node in list(graph.nodes):
        if node.op != "call_function" or node.target not in COMPUTE or _output_quantized(node):
            continue
        if _dynamic_input(node):
            continue  # XNNPACK's dynamic int8 linear: a float output, int8 weights
        dq = node.args[1]
        if not (isinstance(dq, torch.fx.Node) and is_dequantize_node(dq)):
            continue
        try:
            args = [_constant(module, a) for a in dq.args]
        except (ValueError, AttributeError):
            continue
        name = f"_torchslim_float_weight_{changed}"
        target: Any = dq.target
        module.register_buffer(name, target(*args).detach().clone())
        with graph.inserting_before(node):
            node.replace_input_with(dq, graph.get_attr(name))
        if not dq.users:
            graph.erase_node(dq)
        changed += 1
    if changed:
        graph.eliminate_dead_code()
        graph.lint()
        module.recompile()
    return changed


def merge_repeated_quantizers(module: torch.fx.GraphModule) -> int:
    """Make quantize nodes with the same parameters on one value one node (and their dequantize
    nodes one node), in place; returns how many were merged. Two layers reading one tensor (a
    residual block's first convolution and its shortcut) each quantize it; XNNPACK needs the op
    that produces it to have one quantized output."""
    graph = module.graph
    order = {n: i for i, n in enumerate(graph.nodes)}

    def merge(readers: list[Any]) -> int:
        """Replace every reader by the first one in graph order with the same target and arguments."""
        kept: dict[tuple[Any, ...], Any] = {}
        count = 0
        for reader in sorted(readers, key=order.__getitem__):
            key = (reader.target, *reader.args[1:])
            if key in kept:
                reader.replace_all_uses_with(kept[key])
                graph.erase_node(reader)
                count += 1
            else:
                kept[key] = reader
        return count

    merged = 0
    for node in list(graph.nodes):
        merged += merge([u for u in node.users if is_quantize_node(u) and u.args[0] is node])
    for q in [n for n in graph.nodes if is_quantize_node(n)]:
        merged += merge([u for u in q.users if is_dequantize_node(u)])
    if merged:
        graph.lint()
        module.recompile()
    return merged


def propagate_output_qdq(module: torch.fx.GraphModule) -> int:
    """Copy every per-tensor quantizer reached from an int8 head through transparent ops onto the
    head's output and after each op on the way (see the module docstring); in place, returns the
    number of quantize / dequantize pairs inserted."""
    graph = module.graph
    inserted = 0
    for q in [n for n in graph.nodes if is_quantize_node(n)]:
        for node in _insert_points(q):
            insert_qdq_after(graph, node, tuple(q.args[1:]))
            inserted += 1
    if inserted:
        graph.lint()
        module.recompile()
    return inserted


__all__ = [
    "float_weights_where_unfused",
    "insert_qdq_after",
    "is_dequantize_node",
    "is_quantize_node",
    "merge_repeated_quantizers",
    "propagate_output_qdq",
]
