"""ONNX export: int8 QDQ with torchslim's own scales, integer kernels in onnxruntime, output parity."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from quant_toys import context_for, image_batches, make_cnn

from torchslim.core.errors import ConfigError
from torchslim.deploy.onnxruntime import (
    check_parity,
    export_onnx,
    integer_op_summary,
    optimized_op_counts,
    run_onnx,
)
from torchslim.quantization import ActivationQuant, Quantize, WeightQuant, quantize_handler


@pytest.fixture(scope="module")
def int8_cnn():
    batches = image_batches()
    model = quantize_handler(
        make_cnn(),
        Quantize(weights=WeightQuant(bits=8), quantize_single_channel_convs=True),
        targets=None,
        context=context_for(batches),
    ).model
    return model, batches


def test_static_int8_export_runs_integer_kernels(tmp_path, int8_cnn):
    model, batches = int8_cnn
    result = export_onnx(model, tmp_path / "q.onnx", batches[0][0][:1])
    assert result.quantized and result.integer_layers == ["features.conv1", "features.conv2", "fc", "classifier"]
    summary = integer_op_summary(tmp_path / "q.onnx")
    assert summary["integer_ops"].get("QLinearConv") == 2
    assert summary["integer_ops"].get("QGemm") == 2
    assert summary["float_compute_ops"] == {}, "no convolution or matmul may fall back to float"


def test_export_uses_torchslims_own_scales(tmp_path, int8_cnn):
    model, batches = int8_cnn
    export_onnx(model, tmp_path / "q.onnx", batches[0][0][:1])
    inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(tmp_path / "q.onnx")).graph.initializer}
    conv = model.features.conv2
    assert np.array_equal(inits["features.conv2.weight_q"], conv.weight_q.numpy())
    assert inits["features.conv2.weight_q"].dtype == np.int8
    assert np.array_equal(inits["features.conv2.weight_scale"], conv.weight_scale.numpy())
    assert float(inits["features.conv2.input_scale"]) == float(conv.input_scale)
    assert inits["features.conv2._onnx_bias_q"].dtype == np.int32


def test_qdq_output_within_two_quantization_steps(tmp_path, int8_cnn):
    model, batches = int8_cnn
    export_onnx(model, tmp_path / "q.onnx", batches[0][0][:1])
    x = torch.cat([b[0] for b in batches])
    report = check_parity(model, tmp_path / "q.onnx", x, steps=2.0)
    assert report.quantized and report.ok, report
    assert report.max_diff_in_steps <= 2.0
    # batch size is dynamic
    assert run_onnx(tmp_path / "q.onnx", x[:7]).shape == (7, 10)


def test_per_tensor_and_weight_only_exports(tmp_path):
    batches = image_batches()
    ctx = context_for(batches)
    per_tensor = quantize_handler(
        make_cnn(),
        Quantize(weights=WeightQuant(granularity="per_tensor"), quantize_single_channel_convs=True),
        targets=None,
        context=ctx,
    ).model
    export_onnx(per_tensor, tmp_path / "t.onnx", batches[0][0][:1])
    assert optimized_op_counts(tmp_path / "t.onnx")["QLinearConv"] == 2
    assert check_parity(per_tensor, tmp_path / "t.onnx", batches[0][0]).ok
    weight_only = quantize_handler(make_cnn(), Quantize(activations=None), targets=None, context=ctx).model
    export_onnx(weight_only, tmp_path / "w.onnx", batches[0][0][:1])
    graph = onnx.load(str(tmp_path / "w.onnx")).graph
    assert sum(i.data_type == onnx.TensorProto.INT8 for i in graph.initializer) >= 4  # int8 weights on disk
    assert check_parity(weight_only, tmp_path / "w.onnx", batches[0][0]).ok


def test_float_export_matches_pytorch(tmp_path):
    model = make_cnn()
    x = image_batches()[0][0]
    result = export_onnx(model, tmp_path / "f.onnx", x[:1])
    assert not result.quantized
    report = check_parity(model, tmp_path / "f.onnx", x)
    assert not report.quantized and report.ok


@pytest.mark.parametrize("granularity", ["per_token", "per_tensor"])
def test_dynamic_linear_export(tmp_path, transformer, tokens, granularity):
    q = quantize_handler(
        transformer,
        Quantize(activations=ActivationQuant(dynamic_granularity=granularity)),
        targets=None,
        context=context_for(tokens),
    ).model
    ids = tokens[0][0]
    export_onnx(q, tmp_path / "d.onnx", ids[:2])
    counts = optimized_op_counts(tmp_path / "d.onnx")
    integer = counts["MatMulInteger"] + counts["DynamicQuantizeMatMul"] + counts["MatMulIntegerToFloat"]
    assert integer == 6
    got = run_onnx(tmp_path / "d.onnx", ids)
    with torch.no_grad():
        ref = q(ids).numpy()
    cos = (got * ref).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(ref, axis=1)
    assert cos.min() > 0.999
    assert run_onnx(tmp_path / "d.onnx", tokens[1][0][:, :7]).shape == (16, 32)  # dynamic sequence length
    # the embedding table stays int8 in the file and only gathered rows are dequantized
    graph = onnx.load(str(tmp_path / "d.onnx")).graph
    table = next(i for i in graph.initializer if i.name == "embed.weight_q")
    assert table.data_type == onnx.TensorProto.INT8
    assert not any(n.op_type == "DequantizeLinear" and n.input[0] == "embed.weight_q" for n in graph.node)


def test_failed_export_leaves_no_file(tmp_path, int8_cnn):
    model, _ = int8_cnn
    with pytest.raises(ConfigError, match="example_input"):
        export_onnx(model, tmp_path / "x.onnx", "not a tensor")
    with pytest.raises(Exception):  # noqa: B017 - whatever the tracer raises on a wrong shape
        export_onnx(model, tmp_path / "x.onnx", torch.rand(1, 3, 5, 5))
    assert list(tmp_path.iterdir()) == []
    assert all(not getattr(m, "_onnx_export", False) for m in model.modules())
    assert not any(k.startswith("_onnx") for k in model.state_dict())


def test_embedding_with_padding_idx_exports_only_gathered_rows(tmp_path, transformer, tokens):
    transformer.embed.padding_idx = 0  # BERT-style: changes gradients only, the lookup is the same
    q = quantize_handler(transformer, Quantize(), targets=None, context=context_for(tokens)).model
    ids = tokens[0][0]
    export_onnx(q, tmp_path / "p.onnx", ids[:2])
    graph = onnx.load(str(tmp_path / "p.onnx")).graph
    assert not any(n.op_type == "DequantizeLinear" and n.input[0] == "embed.weight_q" for n in graph.node)
    with torch.no_grad():
        ref = q(ids).numpy()
    np.testing.assert_allclose(run_onnx(tmp_path / "p.onnx", ids), ref, atol=0.05 * np.abs(ref).max())


def test_hugging_face_attention_exports_without_the_sdpa_nan_guard(tmp_path):
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(
        vocab_size=40,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
        attn_implementation="sdpa",
    )
    torch.manual_seed(0)
    model = transformers.BertModel(config).eval()
    assert model.config._attn_implementation == "sdpa"

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = model

        def forward(self, input_ids, attention_mask):
            return self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state.mean(dim=1)

    wrapped = Pooled().eval()
    ids = torch.randint(1, 40, (3, 9))
    mask = torch.ones(3, 9, dtype=torch.long)
    mask[1, 6:] = 0
    result = export_onnx(wrapped, tmp_path / "b.onnx", (ids, mask), input_names=["input_ids", "attention_mask"])
    ops = {n.op_type for n in onnx.load(str(tmp_path / "b.onnx")).graph.node}
    assert "IsNaN" not in ops and "Softmax" in ops
    assert any("scaled_dot_product_attention" in note for note in result.notes)
    assert model.config._attn_implementation == "sdpa"  # restored
    with torch.no_grad():
        ref = wrapped(ids, mask).numpy()
    np.testing.assert_allclose(run_onnx(tmp_path / "b.onnx", (ids, mask)), ref, atol=1e-4)
    kept = export_onnx(
        wrapped, tmp_path / "s.onnx", (ids, mask), input_names=["input_ids", "attention_mask"], eager_attention=False
    )
    assert "IsNaN" in {n.op_type for n in onnx.load(str(tmp_path / "s.onnx")).graph.node} and not kept.notes


@pytest.mark.parametrize("padding", [1, 0])
def test_single_channel_conv_exports_as_four_shifted_channels(tmp_path, padding):
    """A 1-channel 3x3 int8 convolution leaves as a 2x2 convolution over four shifted copies: the
    same 9 weight codes (7 zeros added), the same outputs, and onnxruntime's 4-channel kernel."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=padding),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(8 * (12 - 2 * (1 - padding)) ** 2, 4),
    ).eval()
    batches = [(torch.randn(16, 1, 12, 12), torch.zeros(16, dtype=torch.long)) for _ in range(2)]
    q = quantize_handler(
        model,
        Quantize(weights=WeightQuant(bits=8), quantize_single_channel_convs=True),
        targets=None,
        context=context_for(batches),
    ).model
    export_onnx(q, tmp_path / "s.onnx", batches[0][0][:1])
    inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(tmp_path / "s.onnx")).graph.initializer}
    shifted = next(v for k, v in inits.items() if k.endswith("_onnx_shift_weight_q"))
    codes = q[0].weight_q.numpy()
    assert shifted.shape == (8, 4, 2, 2) and shifted.dtype == np.int8
    slot = {0: (0, 0), 1: (0, 1), 2: (1, 1)}  # tap d = shift s + kernel offset k
    placed = np.zeros_like(shifted, dtype=bool)
    for d in range(3):
        for e in range(3):
            (sy, ky), (sx, kx) = slot[d], slot[e]
            np.testing.assert_array_equal(shifted[:, sy * 2 + sx, ky, kx], codes[:, 0, d, e])
            placed[:, sy * 2 + sx, ky, kx] = True
    assert not shifted[~placed].any()  # the 7 unused slots hold zero (symmetric weights)
    assert integer_op_summary(tmp_path / "s.onnx")["integer_ops"].get("QLinearConv") == 1
    x = torch.cat([b[0] for b in batches])
    report = check_parity(q, tmp_path / "s.onnx", x, steps=2.0)
    assert report.ok, report


def test_single_channel_conv_stays_float_by_default_and_pools_in_float(tmp_path):
    """With int8 inputs a 1-channel first convolution stays float (the report says why), and its
    max-pooling stays float in onnxruntime: the export pools before the Relu, so onnxruntime's QDQ
    propagation cannot move the next layer's QuantizeLinear above the pool."""
    from torchslim.deploy.onnxruntime.session import ort_session
    from torchslim.quantization.modules import QuantizedMixin

    batches = image_batches()
    out = quantize_handler(
        make_cnn(), Quantize(weights=WeightQuant(bits=8)), targets=None, context=context_for(batches)
    )
    assert "one input channel" in out.skipped["features.conv1"]
    assert not isinstance(out.model.features.conv1, QuantizedMixin)
    assert isinstance(out.model.features.conv2, QuantizedMixin)
    result = export_onnx(out.model, tmp_path / "f.onnx", batches[0][0][:1])
    assert result.integer_layers == ["features.conv2", "fc", "classifier"]
    ort_session(tmp_path / "f.onnx", threads=1, optimized_path=tmp_path / "opt.onnx")
    optimized = onnx.load(str(tmp_path / "opt.onnx")).graph
    producer = {o: n for n in optimized.node for o in n.output}
    pools = [n for n in optimized.node if n.op_type == "MaxPool"]
    assert pools and all(producer[p.input[0]].op_type != "QuantizeLinear" for p in pools)  # float pooling
    assert integer_op_summary(tmp_path / "f.onnx")["integer_ops"].get("QLinearConv") == 1
    x = torch.cat([b[0] for b in batches])
    assert check_parity(out.model, tmp_path / "f.onnx", x, steps=2.0).ok


def test_pool_before_float_relu_only_moves_float_chains():
    from onnx import helper

    from torchslim.deploy.onnxruntime.graph_passes import pool_before_float_relu

    def graph(quantized_conv: bool):
        nodes = []
        conv_in = "x"
        if quantized_conv:
            nodes += [
                helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"]),
                helper.make_node("DequantizeLinear", ["wq", "s", "z"], ["wd"]),
            ]
            conv_in, w = "xd", "wd"
        else:
            w = "w"
        nodes += [
            helper.make_node("Conv", [conv_in, w], ["c"]),
            helper.make_node("Relu", ["c"], ["r"]),
            helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
            helper.make_node("QuantizeLinear", ["p", "s", "z"], ["y"]),
        ]
        g = helper.make_graph(nodes, "g", [], [helper.make_tensor_value_info("y", onnx.TensorProto.UINT8, None)])
        return helper.make_model(g)

    float_chain = graph(False)
    assert pool_before_float_relu(float_chain) == 1
    ops = [(n.op_type, list(n.input), list(n.output)) for n in float_chain.graph.node]
    assert ops[1:] == [("MaxPool", ["c"], ["r"]), ("Relu", ["r"], ["p"]), ("QuantizeLinear", ["p", "s", "z"], ["y"])]
    int_chain = graph(True)
    assert pool_before_float_relu(int_chain) == 0  # an integer conv's chain is the QDQ pass's business


class _ResidualBlock(torch.nn.Module):
    """conv1 and a 1x1 shortcut read the same input; conv2 feeds the residual Add."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.stem = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.conv1 = torch.nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.conv2 = torch.nn.Conv2d(16, 16, 3, padding=1)
        self.shortcut = torch.nn.Conv2d(8, 16, 1, stride=2)
        self.head = torch.nn.Linear(16, 4)

    def forward(self, x):
        h = torch.relu(self.stem(x))
        y = torch.relu(self.conv2(torch.relu(self.conv1(h))) + self.shortcut(h))
        return self.head(y.mean(dim=(2, 3)))


def test_residual_block_exports_uint8_activations_and_float_weights_where_unfused(tmp_path):
    """Two layers reading one tensor still become integer kernels (activations leave as uint8, so
    onnxruntime need not rewrite the shared int8 pair). Without int8 outputs, a conv that feeds the
    Add (no output QuantizeLinear, so no integer kernel) gets plain float weights onnxruntime's fast
    conv can use."""
    from torchslim.deploy.onnxruntime.graph_passes import constant_value as _constant_value

    batches = [(torch.randn(8, 3, 12, 12), torch.zeros(8, dtype=torch.long)) for _ in range(2)]
    cfg = Quantize(weights=WeightQuant(bits=8), quantize_residual_outputs=False)
    q = quantize_handler(_ResidualBlock().eval(), cfg, targets=None, context=context_for(batches)).model
    export_onnx(q, tmp_path / "r.onnx", batches[0][0][:1])
    graph = onnx.load(str(tmp_path / "r.onnx")).graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    quant = [n for n in graph.node if n.op_type == "QuantizeLinear"]
    assert quant and all(_constant_value(graph, n.input[2]).dtype == np.uint8 for n in quant)
    convs = {n.name.split("/")[1]: n for n in graph.node if n.op_type == "Conv"}
    producer = {o: n for n in graph.node for o in n.output}
    for name in ("conv2", "shortcut"):  # feed the Add: float weights, no DequantizeLinear
        assert convs[name].input[1] in inits and inits[convs[name].input[1]].dtype == np.float32
    for name in ("stem", "conv1"):  # integer kernels: int8 weights behind DequantizeLinear
        assert producer[convs[name].input[1]].op_type == "DequantizeLinear"
    ops = integer_op_summary(tmp_path / "r.onnx")
    assert ops["integer_ops"].get("QLinearConv") == 2  # stem and conv1 (which shares its input with the shortcut)
    x = torch.cat([b[0] for b in batches])
    assert check_parity(q, tmp_path / "r.onnx", x, steps=2.0).ok


def test_residual_branches_get_int8_outputs_and_integer_kernels(tmp_path):
    """By default the convs feeding the residual Add quantize their output too (found with
    torch.fx), so every conv runs as QLinearConv; the simulated model rounds those outputs the same
    way, and the artifact keeps them."""
    from torchslim.io import load, save

    batches = [(torch.randn(8, 3, 12, 12), torch.zeros(8, dtype=torch.long)) for _ in range(2)]
    out = quantize_handler(
        _ResidualBlock().eval(), Quantize(weights=WeightQuant(bits=8)), targets=None, context=context_for(batches)
    )
    q = out.model
    assert out.info["int8_outputs"] == ["conv2", "shortcut"]
    assert "output_scale" in dict(q.conv2.named_buffers()) and "output_scale" not in dict(q.conv1.named_buffers())
    export_onnx(q, tmp_path / "r.onnx", batches[0][0][:1])
    assert integer_op_summary(tmp_path / "r.onnx")["integer_ops"].get("QLinearConv") == 4
    x = torch.cat([b[0] for b in batches])
    assert check_parity(q, tmp_path / "r.onnx", x, steps=2.0).ok
    with torch.no_grad():  # the conv2 output sits on its int8 grid in the simulation
        y = q.conv2(torch.relu(q.conv1(torch.relu(q.stem(x)))))
        codes = y / q.conv2.output_scale + q.conv2.output_zero_point.float()
        assert torch.allclose(codes, codes.round(), atol=1e-3)
    save(q, tmp_path / "a")
    again = load(tmp_path / "a", model=_ResidualBlock())
    with torch.no_grad():
        assert torch.equal(again(x), q(x))
    assert float(again.conv2.output_scale) == float(q.conv2.output_scale)


def test_conv_before_relu6_keeps_int8_weights_and_needs_no_int8_output(tmp_path):
    """onnxruntime folds a Clip (ReLU6) into the next QuantizeLinear and fuses the conv; giving that
    conv float weights would make onnxruntime re-quantize them per tensor itself, so it keeps its
    int8 weights, and the fx walk treats ReLU6 as pass-through (no int8 output needed)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.ReLU6(),
        torch.nn.Conv2d(8, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(8 * 36, 4),
    ).eval()
    batches = [(torch.rand(8, 3, 6, 6) * 4, torch.zeros(8, dtype=torch.long)) for _ in range(2)]
    out = quantize_handler(model, Quantize(weights=WeightQuant(bits=8)), targets=None, context=context_for(batches))
    assert "int8_outputs" not in out.info
    export_onnx(out.model, tmp_path / "c.onnx", batches[0][0][:1])
    graph = onnx.load(str(tmp_path / "c.onnx")).graph
    producer = {o: n for n in graph.node for o in n.output}
    assert all(producer[n.input[1]].op_type == "DequantizeLinear" for n in graph.node if n.op_type == "Conv")
    assert integer_op_summary(tmp_path / "c.onnx")["integer_ops"].get("QLinearConv") == 2
    x = torch.cat([b[0] for b in batches])
    assert check_parity(out.model, tmp_path / "c.onnx", x, steps=2.0).ok
