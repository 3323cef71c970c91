"""A layout pass for onnxruntime's int8 convolutions: flatten channels-last before the classifier.

onnxruntime runs ``QLinearConv`` (and the max-pooling after it) in NHWC, wrapping the int8 part of
the graph in ``Transpose`` nodes; a ``Flatten`` of a 4-D tensor needs NCHW order, so one
``Transpose`` back to NCHW stays before it (fmnist-cnn: 14% of the int8 kernel time went to two
transposes). :func:`flatten_channels_last` writes the flatten in NHWC order instead,

    Gemm(Flatten(x), W)  =  Gemm(Flatten(Transpose(x, 0 2 3 1)), W P)

where ``P`` permutes ``W``'s input columns from ``(c, h, w)`` to ``(h, w, c)`` order: the same
numbers, so parity is unchanged. onnxruntime's transpose optimizer then cancels the inserted
``Transpose`` against its own one back to NCHW, and the int8 tensor flows into the classifier with no
transpose at all. Applied only where the flattened value comes from an int8 convolution (through
Q/DQ, MaxPool, Relu) and the classifier's weight is a constant ``DequantizeLinear`` (or initializer)
read by nothing else; elsewhere the graph is left as it is.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from torchslim.deploy.onnxruntime.graph_passes import dequantized_inputs, graph_links

_ON_THE_WAY = frozenset({"QuantizeLinear", "DequantizeLinear", "MaxPool", "Relu", "Clip"})


def _from_int8_conv(producer: dict[str, Any], name: str) -> bool:
    """True when `name` is reached from a Conv on dequantized inputs through Q/DQ and order-free ops."""
    node = producer.get(name)
    for _ in range(16):
        if node is None:
            return False
        if node.op_type == "Conv":
            return dequantized_inputs(node, producer)
        if node.op_type not in _ON_THE_WAY:
            return False
        node = producer.get(node.input[0])
    return False


def _classifier_weight(graph: Any, flat: str, producer: dict[str, Any], consumers: dict[str, list[Any]]) -> Any:
    """The Gemm reading `flat` (directly or through one Q -> DQ pair) with transB=1 and a constant
    weight, and the initializer holding that weight's values; None when there is no such single one."""
    users = consumers[flat]
    if len(users) == 1 and users[0].op_type == "QuantizeLinear":
        dq_users = consumers[users[0].output[0]]
        users = (
            consumers[dq_users[0].output[0]] if len(dq_users) == 1 and dq_users[0].op_type == "DequantizeLinear" else []
        )
    if len(users) != 1 or users[0].op_type != "Gemm":
        return None
    gemm = users[0]
    if next((a.i for a in gemm.attribute if a.name == "transB"), 0) != 1:
        return None
    weight = gemm.input[1]
    dq = producer.get(weight)
    if dq is not None and dq.op_type == "DequantizeLinear":
        weight = dq.input[0]
    while weight in producer and producer[weight].op_type == "Identity":
        weight = producer[weight].input[0]
    init = next((i for i in graph.initializer if i.name == weight), None)
    if init is None or len(consumers[weight]) != 1:
        return None
    return gemm, init


def _flattened_chw(
    node: Any, shapes: dict[str, list[int | None]], graph_outputs: set[str]
) -> tuple[int, int, int] | None:
    """``(C, H, W)`` when `node` is a ``Flatten(axis=1)`` of a 4-D tensor with static C, H, W."""
    if node.op_type != "Flatten" or node.output[0] in graph_outputs:
        return None
    shape = shapes.get(node.input[0])
    axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
    if shape is None or len(shape) != 4 or axis != 1:
        return None
    c, h, w = shape[1:]
    return (c, h, w) if c and h and w else None


def flatten_channels_last(proto: Any) -> int:
    """The rewrite of the module docstring, in place; returns how many Flatten nodes it changed."""
    import onnx
    from onnx import helper, numpy_helper

    graph = proto.graph
    if not any(node.op_type == "Flatten" for node in graph.node):
        return 0  # nothing to rewrite: skip the whole-graph shape inference (a transformer's export)
    shapes = {
        v.name: [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]
        for v in onnx.shape_inference.infer_shapes(proto).graph.value_info
    }
    nodes, producer, consumers, graph_outputs = graph_links(graph)
    changed = 0
    new_nodes = []
    for node in nodes:
        chw = _flattened_chw(node, shapes, graph_outputs)
        found = None
        if chw is not None and _from_int8_conv(producer, node.input[0]):
            found = _classifier_weight(graph, node.output[0], producer, consumers)
        if chw is not None and found is not None:
            c, h, w = chw
            codes = numpy_helper.to_array(found[1])
            if codes.ndim == 2 and codes.shape[1] == c * h * w:
                permuted = codes.reshape(codes.shape[0], c, h, w).transpose(0, 2, 3, 1).reshape(codes.shape[0], -1)
                found[1].CopyFrom(numpy_helper.from_array(np.ascontiguousarray(permuted), found[1].name))
                moved = f"{node.input[0]}__channels_last"
                new_nodes.append(helper.make_node("Transpose", [node.input[0]], [moved], perm=[0, 2, 3, 1]))
                node.input[0] = moved
                changed += 1
        new_nodes.append(node)
    if changed:
        del graph.node[:]
        graph.node.extend(new_nodes)
    return changed


__all__ = ["flatten_channels_last"]
