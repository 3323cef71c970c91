"""The integer graph end to end: int8 points on residual Adds (and float Add inputs), so that
onnxruntime runs the Adds, ReLUs and pooling of a ResNet as integer kernels, with one Quantize at the
input, and the PyTorch simulation still matches what onnxruntime computes."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from quant_toys import context_for, randomize_bn
from torch import nn

from torchslim.deploy import check_parity, export_onnx, optimized_op_counts
from torchslim.deploy.onnxruntime.graph_passes import drop_repeated_qdq
from torchslim.models.resnet import BasicBlock
from torchslim.quantization import Quantize, WeightQuant, quantize_handler
from torchslim.quantization.int8_graph import POINT_SCALE, point_qparams


class SmallResNet(nn.Module):
    """A 3-channel stem (conv, BN, ReLU), two BasicBlocks (the second with a 1x1 conv shortcut),
    global average pooling, flatten, Linear."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Sequential(
            OrderedDict([("conv", nn.Conv2d(3, 8, 3, padding=1)), ("bn", nn.BatchNorm2d(8)), ("relu", nn.ReLU())])
        )
        self.blocks = nn.Sequential(BasicBlock(8, 8), BasicBlock(8, 16, stride=2))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.fc(self.flatten(self.pool(self.blocks(self.stem(x)))))
        return out


class SharedReluBlock(nn.Module):
    """torchvision's BasicBlock shape: one ReLU module called twice, so the point goes on the block."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.relu(self.conv1(x)))
        out += x
        result: torch.Tensor = self.relu(out)
        return result


class SharedReluNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.relu = nn.ReLU()
        self.layer = nn.Sequential(SharedReluBlock(8), SharedReluBlock(8))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.fc(torch.flatten(self.pool(self.layer(self.relu(self.stem(x)))), 1))
        return out


def _batches(seed: int = 0, n: int = 2) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn(16, 3, 16, 16, generator=gen), torch.zeros(16, dtype=torch.long)) for _ in range(n)]


def _quantize(model: nn.Module, batches, **options):
    cfg = Quantize(weights=WeightQuant(bits=8), **options)
    return quantize_handler(model.eval(), cfg, targets=None, context=context_for(batches))


def test_residual_cnn_runs_as_an_integer_graph_with_one_quantize(tmp_path):
    batches = _batches()
    out = _quantize(randomize_bn(SmallResNet()), batches)
    points = out.info["int8_points"]
    assert points == {"stem.relu": "add input", "blocks.0.relu2": "add output", "blocks.1.relu2": "add output"}
    # the stem conv reaches the Add only through its ReLU point: no output quantizer of its own
    assert out.info["int8_outputs"] == ["blocks.0.conv2", "blocks.1.conv2", "blocks.1.shortcut.conv"]
    q = out.model
    # layers reading a point directly share its quantizer
    assert float(q.blocks[0].conv1.input_scale) == point_qparams(q.stem.relu)[0]
    export_onnx(q, tmp_path / "q.onnx", batches[0][0][:1])
    counts = optimized_op_counts(tmp_path / "q.onnx")
    assert counts["QLinearAdd"] == 2 and counts["QLinearGlobalAveragePool"] == 1
    assert counts["QLinearConv"] == 6 and counts["QGemm"] == 1
    assert counts["QuantizeLinear"] == 1 and counts["DequantizeLinear"] == 0  # QGemm has a float output
    for float_op in ("Add", "Relu", "Conv", "GlobalAveragePool"):
        assert counts[float_op] == 0, float_op
    x = torch.cat([b[0] for b in _batches(seed=5)])
    assert check_parity(q, tmp_path / "q.onnx", x, steps=2.0).ok


def test_points_on_a_block_whose_relu_module_is_shared(tmp_path):
    batches = _batches(seed=2)
    out = _quantize(SharedReluNet(), batches)
    assert out.info["int8_points"] == {"relu": "add input", "layer.0": "add output", "layer.1": "add output"}
    export_onnx(out.model, tmp_path / "q.onnx", batches[0][0][:1])
    counts = optimized_op_counts(tmp_path / "q.onnx")
    assert counts["QLinearAdd"] == 2 and counts["QuantizeLinear"] == 1 and counts["Add"] == 0
    x = torch.cat([b[0] for b in _batches(seed=6)])
    assert check_parity(out.model, tmp_path / "q.onnx", x, steps=2.0).ok


def test_point_output_is_on_its_int8_grid_and_zero_point_is_lowest_after_relu():
    batches = _batches(seed=3)
    q = _quantize(randomize_bn(SmallResNet()), batches).model
    scale, zero_point = point_qparams(q.blocks[0].relu2)
    assert zero_point == -128  # a ReLU output: the clamp at zero is the quantizer's lower bound
    seen = {}
    handle = q.blocks[0].relu2.register_forward_hook(lambda m, a, o: seen.setdefault("y", o))
    with torch.no_grad():
        q(batches[0][0])
    handle.remove()
    codes = seen["y"] / scale + zero_point
    assert torch.allclose(codes, codes.round(), atol=1e-3) and codes.min() >= -128 and codes.max() <= 127


def test_integer_graph_off_keeps_the_adds_in_float(tmp_path):
    batches = _batches()
    out = _quantize(randomize_bn(SmallResNet()), batches, integer_graph=False)
    assert "int8_points" not in out.info and not hasattr(out.model.blocks[0].relu2, POINT_SCALE)
    export_onnx(out.model, tmp_path / "q.onnx", batches[0][0][:1])
    assert optimized_op_counts(tmp_path / "q.onnx")["QLinearAdd"] == 0


def test_points_survive_save_and_load(tmp_path):
    from torchslim.io import load, save

    batches = _batches()
    q = _quantize(randomize_bn(SmallResNet()), batches).model
    save(q, tmp_path / "artifact")
    loaded = load(tmp_path / "artifact", model=randomize_bn(SmallResNet()))
    assert point_qparams(loaded.blocks[1].relu2) == point_qparams(q.blocks[1].relu2)
    x = batches[0][0]
    with torch.no_grad():
        assert torch.equal(loaded(x), q(x))


def test_drop_repeated_qdq_rewires_a_requantization_to_the_same_grid():
    scale = numpy_helper.from_array(np.array(0.1, dtype=np.float32), "s")
    zp = numpy_helper.from_array(np.array(3, dtype=np.uint8), "z")
    other = numpy_helper.from_array(np.array(0.2, dtype=np.float32), "s2")
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q1"]),
        helper.make_node("DequantizeLinear", ["q1", "s", "z"], ["d1"]),
        helper.make_node("QuantizeLinear", ["d1", "s", "z"], ["q2"]),  # the same grid: dropped
        helper.make_node("DequantizeLinear", ["q2", "s", "z"], ["d2"]),
        helper.make_node("QuantizeLinear", ["d1", "s2", "z"], ["q3"]),  # another grid: kept
        helper.make_node("DequantizeLinear", ["q3", "s2", "z"], ["d3"]),
        helper.make_node("Add", ["d2", "d3"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
        [scale, zp, other],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert drop_repeated_qdq(proto) == 1
    onnx.checker.check_model(proto)
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("QuantizeLinear") == 2 and ops.count("DequantizeLinear") == 2
    add = next(n for n in proto.graph.node if n.op_type == "Add")
    assert add.input[0] == "d1" and add.input[1] == "d3"


@pytest.mark.parametrize("symmetric", [True])
def test_symmetric_activations_keep_the_earlier_residual_outputs(symmetric):
    """Points are 8-bit asymmetric (a ReLU output's zero point is the lowest code); with symmetric
    activations the integer graph is not built and the residual branches quantize their outputs."""
    from torchslim.quantization import ActivationQuant

    batches = _batches()
    out = _quantize(randomize_bn(SmallResNet()), batches, activations=ActivationQuant(symmetric=symmetric))
    assert "int8_points" not in out.info and out.info["int8_outputs"]


class PaddedUntraceable(nn.Module):
    """TensorFlow-style "same" padding computed from the input's shape (``int(x.shape[-1])``: torch.fx
    cannot trace it, like Hugging Face's MobileNet / EfficientNet), ReLU6, and a residual Add."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(2)
        self.stem = nn.Conv2d(3, 8, 3)
        self.expand = nn.Conv2d(8, 16, 1)
        self.depthwise = nn.Conv2d(16, 16, 3, groups=16)
        self.reduce = nn.Conv2d(16, 8, 1)
        self.act = nn.ReLU6()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 4)

    @staticmethod
    def same_pad(x: torch.Tensor) -> torch.Tensor:
        size = int(x.shape[-1])
        return nn.functional.pad(x, (1, 1, 1, 1)) if size > 1 else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.stem(self.same_pad(x)))
        y = self.act(self.expand(h))
        y = self.act(self.depthwise(self.same_pad(y)))
        h = h + self.reduce(y)
        out: torch.Tensor = self.fc(torch.flatten(self.pool(h), 1))
        return out


def test_untraceable_model_gets_integer_convolutions_through_padding_and_relu6(tmp_path):
    import torch.fx

    model = PaddedUntraceable().eval()
    with pytest.raises(Exception):  # noqa: B017 - any tracing error: the point of this model
        torch.fx.symbolic_trace(model)
    batches = _batches()
    out = _quantize(model, batches)
    # the autograd walk: padding and ReLU6 pass the value on to the next quantized layer; the two
    # layers that feed the residual Add need an int8 output of their own
    assert out.info["int8_outputs"] == ["reduce", "stem"]
    export_onnx(out.model, tmp_path / "q.onnx", batches[0][0][:1])
    counts = optimized_op_counts(tmp_path / "q.onnx")
    assert counts["QLinearConv"] == 4 and counts["Conv"] == 0
    x = torch.cat([b[0] for b in _batches(seed=5)])
    assert check_parity(out.model, tmp_path / "q.onnx", x, steps=2.0).ok


def test_export_detaches_a_cache_that_requires_grad(tmp_path):
    """A module caching a tensor computed from its parameters with gradients on (LeViT's attention
    biases) is exported with the cache as a constant, and keeps its cache."""

    class Cached(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bias = nn.Parameter(torch.randn(4))
            self.cache: dict[str, torch.Tensor] = {}

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if "b" not in self.cache:
                self.cache["b"] = self.bias * 2
            return x + self.cache["b"]

    model = Cached().eval()
    model(torch.randn(2, 4))  # gradients on: the cache requires grad
    assert model.cache["b"].requires_grad
    export_onnx(model, tmp_path / "c.onnx", torch.randn(2, 4))
    assert check_parity(model, tmp_path / "c.onnx", torch.randn(3, 4)).ok
    assert model.cache["b"].requires_grad  # restored


def test_flatten_before_the_classifier_runs_channels_last(tmp_path):
    """fmnist-cnn's int8 export: the classifier's columns are permuted to (h, w, c) order behind a
    Transpose that onnxruntime cancels against its own, so no transpose is left before the Flatten;
    the outputs are the same numbers."""
    from torchslim.deploy.onnxruntime.layout_passes import flatten_channels_last
    from torchslim.models import build_model

    model = build_model("fmnist-cnn", seed=0).eval()
    gen = torch.Generator().manual_seed(0)
    batches = [(torch.randn(16, 1, 28, 28, generator=gen), torch.zeros(16, dtype=torch.long))]
    q = _quantize(model, batches).model
    export_onnx(q, tmp_path / "q.onnx", batches[0][0][:1])
    proto = onnx.load(tmp_path / "q.onnx")
    transposes = [n for n in proto.graph.node if n.op_type == "Transpose"]
    assert len(transposes) == 1 and list(transposes[0].attribute[0].ints) == [0, 2, 3, 1]
    assert flatten_channels_last(proto) == 0  # applied once: the Flatten now reads the transposed value
    assert optimized_op_counts(tmp_path / "q.onnx").get("Transpose", 0) == 1  # only the one into conv2
    x = torch.randn(8, 1, 28, 28, generator=gen)
    assert check_parity(q, tmp_path / "q.onnx", x).ok
    export_onnx(model, tmp_path / "f.onnx", x[:1])  # float: nothing runs NHWC, nothing changes
    assert flatten_channels_last(onnx.load(tmp_path / "f.onnx")) == 0


class ClampedOutput(nn.Module):
    """conv2's int8 output is read by a ReLU6 alone (`shared=False`), or also by the model's output."""

    def __init__(self, *, shared: bool) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.conv1 = nn.Conv2d(3, 8, 3)
        self.conv2 = nn.Conv2d(8, 8, 1)
        self.act = nn.ReLU6()
        self.shared = shared

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(self.act(self.conv1(x)) * 8.0)
        return torch.cat([self.act(y), y], dim=1) if self.shared else self.act(y)


def test_an_int8_output_read_only_by_relu6_is_calibrated_on_the_clamped_values(tmp_path):
    batches = _batches()
    out = _quantize(ClampedOutput(shared=False), batches)
    conv2 = out.model.conv2
    assert out.info["int8_outputs"] == ["conv1", "conv2"]  # the Mul after conv1's ReLU6 is float
    assert int(out.model.conv1.output_zero_point) == -128
    raw = conv2.float_forward(out.model.act(out.model.conv1(batches[0][0])) * 8.0)
    assert float(raw.min()) < 0 and float(raw.max()) > 6  # the clamp matters on this data
    # all 256 codes over [0, 6]: the quantizer's lowest code is 0.0 and its highest is 6.0
    assert int(conv2.output_zero_point) == -128
    assert float(conv2.output_scale) * 255 == pytest.approx(6.0, rel=1e-6)
    export_onnx(out.model, tmp_path / "q.onnx", batches[0][0][:1])
    x = torch.cat([b[0] for b in _batches(seed=5)])
    assert check_parity(out.model, tmp_path / "q.onnx", x, steps=2.0).within_steps
    # read by something else too: the raw range stays
    both = _quantize(ClampedOutput(shared=True), batches).model.conv2
    assert int(both.output_zero_point) > -128 and float(both.output_scale) * 255 > 6.0


class KeywordCNN(nn.Module):
    """A 1-D keyword-spotting CNN over MFCC frames: the last convolution feeds a mean over time."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv1d(10, 32, 3, padding=1, bias=False), nn.BatchNorm1d(32), nn.ReLU())
        self.dw = nn.Sequential(nn.Conv1d(32, 32, 3, padding=1, groups=32, bias=False), nn.BatchNorm1d(32), nn.ReLU())
        self.pw = nn.Sequential(nn.Conv1d(32, 48, 1, bias=False), nn.BatchNorm1d(48), nn.ReLU())
        self.head = nn.Linear(48, 12)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.pw(self.dw(self.stem(x))).mean(dim=2))
        return out


def test_a_conv1d_feeding_a_float_op_gets_an_int8_output_and_runs_as_an_integer_kernel(tmp_path):
    gen = torch.Generator().manual_seed(0)
    batches = [(torch.randn(16, 10, 49, generator=gen), torch.zeros(16, dtype=torch.long)) for _ in range(2)]
    out = _quantize(randomize_bn(KeywordCNN()), batches)
    assert out.info["int8_outputs"] == ["pw.0"]
    export_onnx(out.model, tmp_path / "q.onnx", batches[0][0][:1])
    counts = optimized_op_counts(tmp_path / "q.onnx")
    assert counts["QLinearConv"] == 3 and counts["Conv"] == 0 and counts["FusedConv"] == 0
    x = torch.randn(32, 10, 49, generator=gen)
    assert check_parity(out.model, tmp_path / "q.onnx", x, steps=2.0).ok
