"""Outlier channel splitting for dynamic per-tensor int8 Linear layers (``Quantize.outlier_channels``)."""

from __future__ import annotations

import pytest
import torch
from quant_toys import context_for
from torch import nn

from torchslim.core.errors import ConfigError
from torchslim.deploy.onnxruntime import export_onnx, run_onnx
from torchslim.io import load, save
from torchslim.quantization import ActivationQuant, Quantize, quantize_handler
from torchslim.quantization.modules import dequantize_module, fold_split_weight, split_multipliers
from torchslim.quantization.ptq import outlier_split


class TwoLayer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc1 = nn.Linear(64, 32)
        self.fc2 = nn.Linear(32, 8)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


class Fork(nn.Module):
    """Two layers reading the same input (like query / key / value)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b = nn.Linear(64, 8), nn.Linear(64, 8)

    def forward(self, x):
        return self.a(x) + self.b(x)


def outlier_batches(n: int = 256, batch: int = 64, seed: int = 3):
    """Inputs whose channel 3 has 25x the range of the others (like a transformer's outlier feature)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 64, generator=g)
    x[:, 3] *= 25.0
    return [(x[i : i + batch], torch.zeros(batch, dtype=torch.long)) for i in range(0, n, batch)]


def dynamic(**kw):
    return Quantize(activations=ActivationQuant(mode="dynamic", dynamic_granularity="per_tensor"), **kw)


def test_outlier_split_counts_copies_from_the_k_plus_1_th_range():
    amax = torch.tensor([8.0, 1.0, 1.0, 2.5, 1.0, 1.0])
    split = outlier_split(amax, 2, max_extra=20)  # ceiling = third largest = 1.0
    assert split.tolist() == [0] * 7 + [3] * 2  # m_0 = 8 copies, m_3 = ceil(2.5) = 3
    assert outlier_split(amax, 2, max_extra=3).tolist() == [0, 0, 0]  # the budget goes to the largest first
    assert outlier_split(torch.ones(6), 2).numel() == 0  # nothing stands out
    assert outlier_split(amax, 0).numel() == 0
    assert outlier_split(torch.tensor([1.9, 1.0, 1.0, 1.0]), 1, max_extra=4).numel() == 0  # < 2x: not worth a pass


def test_layers_reading_the_same_input_share_the_split_tensors():
    q = quantize_handler(
        Fork(), dynamic(outlier_channels=2), targets=None, context=context_for(outlier_batches())
    ).model
    assert q.a.input_split is q.b.input_split and q.a._split_mult_main is q.b._split_mult_main


def test_split_is_exact_in_float():
    torch.manual_seed(1)
    w = torch.randn(5, 4)
    split = torch.tensor([1, 1, 3])
    main, extra = split_multipliers(4, split)
    assert main.tolist() == pytest.approx([1.0, 1 / 3, 1.0, 0.5])
    expanded = torch.cat([w, w[:, split]], dim=1)
    x = torch.randn(7, 4)
    x_split = torch.cat([x * main, x[:, split] * extra], dim=1)
    torch.testing.assert_close(x_split @ expanded.t(), x @ w.t())
    torch.testing.assert_close(fold_split_weight(expanded, split), w)


def test_splitting_raises_the_output_sqnr_of_an_outlier_input():
    model, batches = TwoLayer(), outlier_batches()
    plain = quantize_handler(model, dynamic(outlier_channels=0), targets=None, context=context_for(batches))
    split = quantize_handler(model, dynamic(outlier_channels=2), targets=None, context=context_for(batches))
    rows = {r["layer"]: r for r in split.layers}
    assert rows["fc1"]["split_channels"] == 4  # channel 3 (25x) gets copies, at most 64 / 16
    assert rows["fc2"]["split_channels"] <= 2  # 32 inputs: k = min(2, 32 // 32) = 1, at most 32 / 16 copies
    assert rows["fc1"]["params"] == 64 * 32  # the copies are not counted twice
    plain_rows = {r["layer"]: r for r in plain.layers}
    assert plain_rows["fc1"]["split_channels"] == 0
    assert rows["fc1"]["output_sqnr_db"] > plain_rows["fc1"]["output_sqnr_db"] + 6  # at least 1 bit finer
    assert rows["fc1"]["weight_sqnr_db"] >= 40  # columns are repeated, not scaled: weight ranges unchanged
    # the float layer it stands for is the original one (weights dequantized)
    back = dequantize_module(split.model.fc1)
    assert back.weight.shape == model.fc1.weight.shape
    torch.testing.assert_close(back.weight, model.fc1.weight, atol=0.02, rtol=0)


def test_split_layers_round_trip_through_the_artifact_and_onnx(tmp_path):
    model, batches = TwoLayer(), outlier_batches()
    q = quantize_handler(model, dynamic(outlier_channels=2), targets=None, context=context_for(batches)).model
    x = batches[0][0]
    save(q, tmp_path / "a")
    again = load(tmp_path / "a", model=TwoLayer())
    with torch.no_grad():
        torch.testing.assert_close(again(x), q(x))
    assert again.fc1.input_split.tolist() == q.fc1.input_split.tolist()
    assert torch.equal(again.fc1.weight_q, q.fc1.weight_q)  # repeated columns rebuilt from the stored ones
    from torchslim.measure import count_parameters

    assert count_parameters(q) == count_parameters(model)
    export_onnx(q, tmp_path / "m.onnx", x[:1])
    got = torch.from_numpy(run_onnx(tmp_path / "m.onnx", x))
    with torch.no_grad():
        ref = q(x)
    step = float(ref.abs().max()) / 127
    assert float((got - ref).abs().max()) <= 2 * step


def test_without_calibration_data_nothing_is_split_and_a_note_says_why():
    model = TwoLayer()
    out = quantize_handler(model, dynamic(outlier_channels=2), targets=None, context=context_for(None))
    assert all(r["split_channels"] == 0 for r in out.layers)
    assert any("outlier channel splitting skipped" in n for n in out.info.get("notes", []))


def test_negative_outlier_channels_is_a_config_error():
    with pytest.raises(ConfigError, match="outlier_channels"):
        Quantize(outlier_channels=-1)


def test_split_export_quantizes_once_then_copies_uint8_codes(tmp_path):
    """Scale, DynamicQuantizeLinear, then Gather the copies from the uint8 codes: the extra pass is
    over bytes, and two layers reading one input share it all in onnxruntime."""
    import onnx

    from torchslim.deploy.onnxruntime import optimized_op_counts

    batches = outlier_batches()
    q = quantize_handler(Fork(), dynamic(outlier_channels=2), targets=None, context=context_for(batches)).model
    x = batches[0][0]
    export_onnx(q, tmp_path / "f.onnx", x[:1])
    graph = onnx.load(str(tmp_path / "f.onnx")).graph
    producer = {out: node for node in graph.node for out in node.output}
    gathers = [n for n in graph.node if n.op_type == "Gather"]
    assert gathers and all(producer[g.input[0]].op_type == "DynamicQuantizeLinear" for g in gathers)
    assert not any(
        n.op_type == "Concat" and producer.get(n.input[0]) is not None and producer[n.input[0]].op_type == "Mul"
        for n in graph.node
    )  # no float copies
    counts = optimized_op_counts(tmp_path / "f.onnx")
    assert counts["DynamicQuantizeLinear"] + counts["DynamicQuantizeMatMul"] == 1  # shared by a and b
    got = torch.from_numpy(run_onnx(tmp_path / "f.onnx", x))
    with torch.no_grad():
        ref = q(x)
    assert float((got - ref).abs().max()) <= 2 * float(ref.abs().max()) / 127
    assert not any(k.startswith("_onnx") for k in q.state_dict())
