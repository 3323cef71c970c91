"""The ONNX graph passes that make onnxruntime's integer fusion reliable on a torchslim QDQ export.

All four work on an ``onnx.ModelProto`` in place and change no value computed by the graph:

* :func:`pool_before_float_relu`: ``Relu -> MaxPool -> QuantizeLinear`` after a float compute op
  becomes ``MaxPool -> Relu -> QuantizeLinear`` (max commutes with a non-decreasing function);
* :func:`propagate_output_qdq`: when a ``QuantizeLinear`` is reached from a ``Conv`` / ``Gemm`` /
  ``MatMul`` through a single-consumer chain of quantization-transparent ops (:data:`TRANSPARENT_OPS`),
  copies of that ``QuantizeLinear -> DequantizeLinear`` pair are placed right after the producer and
  after each op of the chain. Quantization is monotone, so it commutes with max-pooling and
  reshapes, and applying the same quantizer twice is the same as once; a ``Relu`` fed by a
  ``DequantizeLinear`` whose zero point is the lowest code is a no-op and is dropped. onnxruntime
  then sees the ``DQ -> Conv -> Q`` groups it fuses into ``QLinearConv`` (Gemm: ``QGemm``), and runs
  max-pooling and reshapes on int8;
* :func:`drop_repeated_qdq`: ``QuantizeLinear(DequantizeLinear(q, s, z), s, z)`` is ``q`` (an
  ``onnxscript`` rewrite rule; onnxruntime removes such pairs itself, the pass keeps the file and
  other runtimes' graphs free of them);
* :func:`float_weights_where_unfused`: a Conv that onnxruntime cannot fuse into an integer kernel
  gets its weight and bias as float initializers (dequantized here) instead of ``DequantizeLinear``
  nodes, so onnxruntime's fast float convolution (which needs constant weights) runs it.

The speed effect of each pass is measured in ``benchmarks/results/quantization.md`` and
``benchmarks/results/int8_breakdown.md``.
"""

from __future__ import annotations

import collections
from typing import Any

import numpy as np

TRANSPARENT_OPS = frozenset(
    {"Relu", "Clip", "MaxPool", "Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Identity"}
)
"""Ops a quantizer commutes with: a QDQ pair after them may also be placed before them (``Clip``:
``q(clip(dq(q(x)))) = q(clip(x))`` for a monotone round-to-nearest ``q``; ``Pad`` with a constant
zero too, see :func:`_transparent`)."""
COMPUTE_OPS = frozenset({"Conv", "Gemm", "MatMul"})
"""Ops onnxruntime fuses into integer kernels when their inputs and output are quantized."""
INT8_POOL_OPS = frozenset({"GlobalAveragePool", "AveragePool"})
"""Pooling onnxruntime runs on int8 (``QLinearGlobalAveragePool``, ``QLinearAveragePool``) between
a ``DequantizeLinear`` and a ``QuantizeLinear``."""


def constant_value(graph: Any, name: str, depth: int = 0) -> np.ndarray | None:
    """The value of initializer / Constant `name`, following Identity nodes (the exporter's dedup)."""
    from onnx import numpy_helper

    for init in graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    for node in graph.node:
        if node.output and node.output[0] == name:
            if node.op_type == "Constant":
                for attr in node.attribute:
                    if attr.name == "value":
                        return numpy_helper.to_array(attr.t)
            if node.op_type == "Identity" and depth < 8:
                return constant_value(graph, node.input[0], depth + 1)
            return None
    return None


def dequantized_inputs(node: Any, producer: dict[str, Any]) -> bool:
    """True when the data and weight inputs of `node` come from DequantizeLinear."""
    feeds = [producer.get(name) for name in node.input[:2]]
    return len(feeds) == 2 and all(f is not None and f.op_type == "DequantizeLinear" for f in feeds)


def graph_links(graph: Any) -> tuple[list[Any], dict[str, Any], dict[str, list[Any]], set[str]]:
    """The graph's nodes, ``{tensor: producing node}``, ``{tensor: reading nodes}`` and output names."""
    nodes = list(graph.node)
    producer = {out: node for node in nodes for out in node.output}
    consumers: dict[str, list[Any]] = collections.defaultdict(list)
    for node in nodes:
        for inp in node.input:
            if inp:
                consumers[inp].append(node)
    return nodes, producer, consumers, {o.name for o in graph.output}


# ----------------------------------------------------------------------------------------------
# pool before a float Relu


def pool_before_float_relu(proto: Any) -> int:
    """``Relu -> MaxPool -> QuantizeLinear`` after a float Conv / Gemm / MatMul becomes
    ``MaxPool -> Relu -> QuantizeLinear``, in place; returns how many pairs were swapped.

    Exact (max commutes with a non-decreasing function). It keeps a float layer's pooling in float:
    onnxruntime otherwise moves the QuantizeLinear above the MaxPool (its QDQ propagation crosses
    MaxPool, not Relu) and pools the 4x larger tensor in int8 with a slow NCHW kernel.
    """
    graph = proto.graph
    nodes, producer, consumers, graph_outputs = graph_links(graph)
    swapped = 0
    for pool in nodes:
        if pool.op_type != "MaxPool" or len(pool.output) != 1:
            continue
        relu = producer.get(pool.input[0])
        if (
            relu is None
            or relu.op_type != "Relu"
            or len(consumers[relu.output[0]]) != 1
            or relu.output[0] in graph_outputs
        ):
            continue
        compute = producer.get(relu.input[0])
        if compute is None or compute.op_type not in COMPUTE_OPS or dequantized_inputs(compute, producer):
            continue
        users = consumers[pool.output[0]]
        if not users or any(u.op_type != "QuantizeLinear" for u in users) or pool.output[0] in graph_outputs:
            continue
        before, between, after = relu.input[0], relu.output[0], pool.output[0]
        pool.input[0], pool.output[0] = before, between
        relu.input[0], relu.output[0] = between, after
        i, j = nodes.index(relu), nodes.index(pool)
        nodes[i], nodes[j] = nodes[j], nodes[i]
        swapped += 1
    if swapped:
        del graph.node[:]
        graph.node.extend(nodes)
    return swapped


# ----------------------------------------------------------------------------------------------
# float weights where onnxruntime cannot fuse


def _fused_by_onnxruntime(node: Any, consumers: dict[str, list[Any]], graph_outputs: set[str]) -> bool:
    """True when onnxruntime fuses Conv `node` into an integer kernel (its output is quantized)."""
    users = consumers[node.output[0]]
    if len(users) == 1 and users[0].op_type in ("Relu", "Clip") and users[0].output[0] not in graph_outputs:
        users = consumers[users[0].output[0]]  # onnxruntime folds a Relu / Clip into the QuantizeLinear
    return bool(users) and node.output[0] not in graph_outputs and all(u.op_type == "QuantizeLinear" for u in users)


def _dequantized_initializer(graph: Any, dq: Any) -> np.ndarray | None:
    """The float32 value of DequantizeLinear `dq` over constant codes, or None when not constant."""
    codes = constant_value(graph, dq.input[0])  # an initializer, or one behind Identity nodes
    if codes is None:
        return None
    q = codes.astype(np.float64)
    scale = constant_value(graph, dq.input[1])
    zp = constant_value(graph, dq.input[2]) if len(dq.input) > 2 and dq.input[2] else None
    if scale is None or (len(dq.input) > 2 and dq.input[2] and zp is None):
        return None
    axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
    shape = [1] * q.ndim
    if scale.size > 1:
        shape[axis % q.ndim] = -1
    zp_f = zp.astype(np.float64).reshape(shape) if zp is not None else 0.0
    return ((q - zp_f) * scale.astype(np.float64).reshape(shape)).astype(np.float32)


def _drop_dead_dequantize(graph: Any, replaced: dict[str, str], graph_outputs: set[str]) -> None:
    """Remove the DequantizeLinear nodes in `replaced` nothing reads any more, and their initializers."""
    live = {inp for node in graph.node for inp in node.input} | graph_outputs
    dropped = [
        n for n in graph.node if n.op_type == "DequantizeLinear" and n.output[0] in replaced and n.output[0] not in live
    ]
    keep = [n for n in graph.node if n not in dropped]
    del graph.node[:]
    graph.node.extend(keep)
    used = {inp for node in graph.node for inp in node.input}
    candidates = {inp for n in dropped for inp in n.input}
    for init in [i for i in graph.initializer if i.name in candidates and i.name not in used]:
        graph.initializer.remove(init)


def float_weights_where_unfused(proto: Any) -> int:
    """Give a Conv whose output no ``QuantizeLinear`` takes (so onnxruntime cannot fuse it
    into an integer kernel: a residual branch before its ``Add``, say) its weight and bias as float
    initializers, dequantized here, instead of ``DequantizeLinear`` nodes; in place, returns how many.

    The values are the same; the difference is speed: onnxruntime's fast float convolution (NCHWc)
    needs constant weights, and runs a conv on dequantized weights through a plain kernel.
    """
    from onnx import numpy_helper

    graph = proto.graph
    nodes, producer, consumers, graph_outputs = graph_links(graph)
    replaced: dict[str, str] = {}  # DequantizeLinear output -> float initializer name
    changed = 0
    for node in nodes:
        # (onnxruntime fuses a Gemm on dequantized inputs even with a float output)
        if node.op_type != "Conv" or _fused_by_onnxruntime(node, consumers, graph_outputs):
            continue  # a fused Conv: onnxruntime would re-quantize float weights itself, per tensor
        touched = False
        for slot in (1, 2):
            if len(node.input) <= slot or not node.input[slot]:
                continue
            dq = producer.get(node.input[slot])
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            if dq.output[0] not in replaced:
                value = _dequantized_initializer(graph, dq)
                if value is None:
                    continue
                name = f"{dq.output[0]}__float"
                graph.initializer.append(numpy_helper.from_array(value, name))
                replaced[dq.output[0]] = name
            node.input[slot] = replaced[dq.output[0]]
            touched = True
        changed += touched
    if replaced:
        _drop_dead_dequantize(graph, replaced, graph_outputs)
    return changed


# ----------------------------------------------------------------------------------------------
# output QDQ propagation


def _same_quantizer(graph: Any, node: Any, scale_value: np.ndarray, zp_value: np.ndarray | None) -> bool:
    """True when `node` is a QuantizeLinear with this scale and zero point (same values and dtype)."""
    if node.op_type != "QuantizeLinear" or len(node.input) < 3:
        return False
    other_scale, other_zp = constant_value(graph, node.input[1]), constant_value(graph, node.input[2])
    return (
        other_scale is not None
        and other_zp is not None
        and zp_value is not None
        and np.array_equal(other_scale, scale_value)
        and np.array_equal(other_zp, zp_value)
        and other_zp.dtype == zp_value.dtype
    )


def _insert_points(
    graph: Any, q: Any, links: tuple[list[Any], dict[str, Any], dict[str, list[Any]], set[str]]
) -> list[str]:
    """The tensors after which copies of QuantizeLinear `q`'s QDQ pair go (empty: none)."""
    _, producer, consumers, graph_outputs = links
    if q.op_type != "QuantizeLinear" or len(q.input) < 3:
        return []
    scale_value = constant_value(graph, q.input[1])
    if scale_value is None or scale_value.size != 1:
        return []
    zp_value = constant_value(graph, q.input[2])
    chain = []
    cur = q.input[0]
    head = None
    while True:
        users = consumers[cur]
        # several readers are fine where all of them quantize it the same way (a residual
        # block's conv1 and shortcut reading one tensor, calibrated on the same data)
        if cur in graph_outputs or (
            len(users) != 1
            and not (cur == q.input[0] and all(_same_quantizer(graph, u, scale_value, zp_value) for u in users))
        ):
            break
        p = producer.get(cur)
        if p is None:
            break
        if _transparent(graph, p):
            chain.append(p)
            cur = p.input[0]
            continue
        if p.op_type in COMPUTE_OPS and dequantized_inputs(p, producer):
            head = p  # an integer kernel once fused; a float one keeps its float output
        elif p.op_type in INT8_POOL_OPS and getattr(producer.get(p.input[0]), "op_type", None) == "DequantizeLinear":
            head = p  # int8 pooling once fused (the QuantizeLinear must follow it directly)
        elif p.op_type == "Add" and dequantized_inputs(p, producer):
            head = p  # QLinearAdd once fused (both inputs int8 already)
        break
    if head is None or not chain:
        return []
    return [cur] + [n.output[0] for n in reversed(chain[1:])]


def _transparent(graph: Any, node: Any) -> bool:
    """True for an op of :data:`TRANSPARENT_OPS`, or a ``Pad`` that pads with constant zeros (0 is a
    grid value of every asymmetric quantizer, so ``q(pad(x, 0)) = pad(q(x), zero point)``)."""
    if node.op_type in TRANSPARENT_OPS:
        return True
    if node.op_type != "Pad":
        return False
    mode = next((a.s for a in node.attribute if a.name == "mode"), b"constant")
    if mode != b"constant":
        return False
    if len(node.input) < 3 or not node.input[2]:
        return True
    value = constant_value(graph, node.input[2])
    return value is not None and value.size == 1 and float(value.reshape(())) == 0.0


def _zero_point_is_lowest(zp_value: np.ndarray | None) -> bool:
    """True for a one-element integer zero point equal to its dtype's lowest code."""
    if zp_value is None or zp_value.size != 1 or not np.issubdtype(zp_value.dtype, np.integer):
        return False
    return int(zp_value.reshape(())) == int(np.iinfo(zp_value.dtype).min)


def _rewrite(
    graph: Any, nodes: list[Any], insert: dict[str, tuple[str, str]], graph_outputs: set[str]
) -> tuple[int, int]:
    """Place the QDQ pairs of `insert` and drop Relus that follow a lowest-zero-point DQ; in place."""
    from onnx import helper

    new_nodes = []
    rename: dict[str, str] = {}
    dq_zero_is_min: dict[str, bool] = {}
    inserted = removed = counter = 0
    for node in nodes:
        for i, name in enumerate(node.input):
            if name in rename:
                node.input[i] = rename[name]
        if node.op_type == "Relu" and dq_zero_is_min.get(node.input[0], False) and node.output[0] not in graph_outputs:
            rename[node.output[0]] = node.input[0]
            removed += 1
            continue
        new_nodes.append(node)
        if node.op_type == "DequantizeLinear" and len(node.input) >= 3:
            zp_value = constant_value(graph, node.input[2])
            if zp_value is not None and zp_value.size == 1:
                dq_zero_is_min[node.output[0]] = _zero_point_is_lowest(zp_value)
        for out in node.output:
            if out in insert:
                scale, zp = insert[out]
                counter += 1
                q_out, dq_out = f"{out}__tsq{counter}", f"{out}__tsdq{counter}"
                new_nodes.append(
                    helper.make_node("QuantizeLinear", [out, scale, zp], [q_out], name=f"torchslim_Q_{counter}")
                )
                new_nodes.append(
                    helper.make_node("DequantizeLinear", [q_out, scale, zp], [dq_out], name=f"torchslim_DQ_{counter}")
                )
                rename[out] = dq_out
                zp_value = constant_value(graph, zp)
                if zp_value is not None:
                    dq_zero_is_min[dq_out] = int(zp_value.reshape(())) == int(np.iinfo(zp_value.dtype).min)
                inserted += 1
    del graph.node[:]
    graph.node.extend(new_nodes)
    return inserted, removed


def _const_array(value: Any) -> np.ndarray | None:
    from onnxscript.ir import convenience

    tensor = convenience.get_const_tensor(value)
    return None if tensor is None else tensor.numpy()


def _same_grid(context: Any, x: Any, s: Any, z: Any, s2: Any, z2: Any, **_: Any) -> bool:
    """The rewrite condition of :func:`drop_repeated_qdq`: one per-tensor grid, constant on both sides."""
    scale, zp, scale2, zp2 = (_const_array(v) for v in (s, z, s2, z2))
    if scale is None or zp is None or scale2 is None or zp2 is None:
        return False
    return scale.size == 1 and np.array_equal(scale, scale2) and np.array_equal(zp, zp2) and zp.dtype == zp2.dtype


def drop_repeated_qdq(proto: Any) -> int:
    """``QuantizeLinear(DequantizeLinear(q, s, z), s, z)`` is ``q``: such a QuantizeLinear is dropped
    (its readers read ``q``), then common subexpression elimination makes the ``DequantizeLinear``
    that followed it the first one again. Returns how many were dropped; the graph is replaced in
    place. Two quantizers that are one (an int8 point and the input quantizer of a layer reading
    it) are so written once. An ``onnxscript`` rewrite rule (pattern, condition, replacement).
    """
    from onnxscript import ir
    from onnxscript.ir.passes.common import CommonSubexpressionEliminationPass, RemoveUnusedNodesPass
    from onnxscript.rewriter import pattern

    def requantized(op: Any, x: Any, s: Any, z: Any, s2: Any, z2: Any) -> Any:
        return op.QuantizeLinear(op.DequantizeLinear(x, s, z), s2, z2)

    def codes(op: Any, x: Any, **_: Any) -> Any:
        return x

    before = sum(n.op_type == "QuantizeLinear" for n in proto.graph.node)
    model = ir.serde.deserialize_model(proto)
    rule = pattern.RewriteRule(requantized, codes, _same_grid, remove_nodes=False)  # q may have other readers
    if not pattern.RewriteRuleSet([rule]).apply_to_model(model):
        return 0
    CommonSubexpressionEliminationPass()(model)
    RemoveUnusedNodesPass()(model)
    proto.CopyFrom(ir.serde.serialize_model(model))
    return before - sum(n.op_type == "QuantizeLinear" for n in proto.graph.node)


def propagate_output_qdq(proto: Any) -> tuple[int, int]:
    """The QDQ propagation of the module docstring, in place; returns (QDQ pairs inserted, Relus removed)."""
    graph = proto.graph
    links = graph_links(graph)
    nodes, _, _, graph_outputs = links
    insert: dict[str, tuple[str, str]] = {}  # tensor -> (scale name, zero point name) of the pair after it
    for q in nodes:
        for tensor in _insert_points(graph, q, links):
            if tensor not in insert:
                insert[tensor] = (_as_initializer(graph, q.input[1]), _as_initializer(graph, q.input[2]))
    return _rewrite(graph, nodes, insert, graph_outputs)


def _as_initializer(graph: Any, name: str) -> str:
    """An initializer holding constant `name`'s value (`name` itself when it is one), so a copy of a
    quantizer placed earlier in the graph reads no value a later node makes."""
    from onnx import numpy_helper

    if any(init.name == name for init in graph.initializer):
        return name
    value = constant_value(graph, name)
    if value is None:
        return name
    new = f"{name}__init"
    if not any(init.name == new for init in graph.initializer):
        graph.initializer.append(numpy_helper.from_array(value, new))
    return new
