"""The FX passes that prepare a ``pt2e`` export for XNNPACK's int8 kernels: no value changes,
quantizers where XNNPACK needs them, float weights where no int8 kernel can run."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from torchslim.deploy.executorch.qdq_passes import (
    float_weights_where_unfused,
    is_dequantize_node,
    is_quantize_node,
    merge_repeated_quantizers,
    propagate_output_qdq,
)
from torchslim.quantization import pt2e_ops

QPARAMS = (0.02, -128, -128, 127)  # a quantizer after a ReLU: zero point at the lowest code


class _Pt2eNet(nn.Module):
    """``dq(x) -> conv(dq(w)) -> ReLU -> max-pool -> flatten -> qdq -> linear(dq(w))``: the
    quantizer sits where the linear layer reads its input, as torchslim's export form puts it."""

    def __init__(self, *, shared_reader: bool = False) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.register_buffer("conv_q", torch.randint(-127, 128, (4, 3, 3, 3), generator=gen, dtype=torch.int8))
        self.register_buffer("conv_s", torch.full((4,), 0.01))
        self.register_buffer("conv_z", torch.zeros(4, dtype=torch.int64))
        self.register_buffer("fc_q", torch.randint(-127, 128, (5, 4 * 4 * 4), generator=gen, dtype=torch.int8))
        self.register_buffer("fc_s", torch.full((5,), 0.01))
        self.register_buffer("fc_z", torch.zeros(5, dtype=torch.int64))
        self.shared_reader = shared_reader

    def forward(self, x: Tensor) -> Any:
        x = pt2e_ops.qdq_per_tensor(x, 0.01, 0, -128, 127)
        w = pt2e_ops.dequantize_weight(self.conv_q, self.conv_s, self.conv_z, 0, -128, 127)
        y = torch.flatten(torch.max_pool2d(torch.relu(torch.conv2d(x, w, padding=1)), 2), 1)
        fc_w = pt2e_ops.dequantize_weight(self.fc_q, self.fc_s, self.fc_z, 0, -128, 127)
        out = torch.nn.functional.linear(pt2e_ops.qdq_per_tensor(y, *QPARAMS), fc_w)
        if self.shared_reader:
            return out, pt2e_ops.qdq_per_tensor(y, *QPARAMS) * 2
        return out


def _graph_module(model: nn.Module, x: Tensor) -> torch.fx.GraphModule:
    with torch.no_grad():
        return torch.export.export(model.eval(), (x,)).module()


def _count(module: torch.fx.GraphModule, predicate: Any) -> int:
    return sum(1 for node in module.graph.nodes if predicate(node))


def test_output_quantizers_are_copied_after_the_fused_relu_and_the_pooling_without_changing_values() -> None:
    x = torch.rand(2, 3, 8, 8)
    module = _graph_module(_Pt2eNet(), x)
    before = module(x)
    assert _count(module, is_quantize_node) == 2
    # after the ReLU (XNNPACK fuses it into the convolution) and after the max-pooling; the flatten
    # feeds the original quantizer directly
    assert propagate_output_qdq(module) == 2
    assert _count(module, is_quantize_node) == 4
    conv = next(n for n in module.graph.nodes if n.target is torch.ops.aten.conv2d.default)
    (relu,) = conv.users
    assert [is_quantize_node(u) for u in relu.users] == [True]
    torch.testing.assert_close(module(x), before, rtol=0, atol=0)
    assert propagate_output_qdq(module) == 0  # nothing left to copy


def test_a_layer_with_a_float_output_gets_its_weight_as_a_float_constant() -> None:
    x = torch.rand(2, 3, 8, 8)
    module = _graph_module(_Pt2eNet(), x)
    before = module(x)
    propagate_output_qdq(module)
    # the linear layer's output (the logits) is not quantized: its weight becomes a constant
    assert float_weights_where_unfused(module) == 1
    linear = next(n for n in module.graph.nodes if n.target is torch.ops.aten.linear.default)
    assert linear.args[1].op == "get_attr"
    # the convolution's output is quantized now: it keeps its int8 weight
    conv = next(n for n in module.graph.nodes if n.target is torch.ops.aten.conv2d.default)
    assert is_dequantize_node(conv.args[1])
    torch.testing.assert_close(module(x), before, rtol=0, atol=0)


def test_two_readers_quantizing_one_value_the_same_way_share_one_quantizer() -> None:
    x = torch.rand(2, 3, 8, 8)
    module = _graph_module(_Pt2eNet(shared_reader=True), x)
    before = module(x)
    assert merge_repeated_quantizers(module) == 2  # one quantize and one dequantize node
    flatten = next(n for n in module.graph.nodes if n.target is torch.ops.aten.flatten.using_ints)
    assert len(flatten.users) == 1
    after = module(x)
    for a, b in zip(after, before, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
