"""Each quality verdict fires on the numbers that call for it, and a healthy run has none."""

from __future__ import annotations

import json

import pytest
import torch

from torchslim.measure.agreement import compare_models, top_k_agreement
from torchslim.report import Report
from torchslim.report.verdicts import compute_verdicts

BEFORE = {
    "accuracy": 0.90,
    "accuracy_samples": 2000,
    "params": 1000,
    "nonzero_params": 1000,
    "macs": 10_000,
    "bytes": 4000,
    "latency_ms": 2.0,
    "latency_runtime": "onnxruntime",
    "batch_size": 1,
    "threads": 2,
}
HEALTHY_AFTER = dict(
    BEFORE,
    accuracy=0.895,
    bytes=1100,
    latency_ms=0.9,
    agreement={"top1_agreement": 0.99, "sqnr_db": 31.0, "cosine": 0.999, "kl_divergence": 0.001, "samples": 2000},
)
QUANTIZE_STEP = {
    "index": 0,
    "technique": "quantize",
    "config": {"calibration_samples": 512},
    "info": {"calibration_samples": 512, "folded_batchnorm": [["conv1", "bn1"], ["conv2", "bn2"]]},
    "skipped": {"bn1": "BatchNorm folded into conv1", "bn2": "BatchNorm folded into conv2"},
    "seconds": 1.0,
}


def kinds(before, after, steps=(), **kwargs):
    return [v.kind for v in compute_verdicts(before, after, list(steps), **kwargs) if v.severity == "warning"]


def test_a_healthy_run_has_no_warning():
    report = Report(model="m", before=BEFORE, after=HEALTHY_AFTER, steps=[QUANTIZE_STEP], num_classes=10)
    assert report.warnings() == []
    # only the folding fact, stated as folding
    assert [v.kind for v in report.verdicts()] == ["batchnorm_folded"]
    text = report.render()
    assert "WARNING" not in text and "2 BatchNorm layer(s) folded" in text
    assert "skipped" not in text and "folded 2 BatchNorm layer(s) into their convolutions" in text


def test_accuracy_drop_past_max_drop():
    after = dict(HEALTHY_AFTER, accuracy=0.81)
    assert kinds(BEFORE, after) == ["quality_drop"]
    (v,) = compute_verdicts(BEFORE, after)
    assert "9.00 points" in v.message and "90.00% -> 81.00%" in v.message and "2,000 samples" in v.message
    assert kinds(BEFORE, after, max_drop=0.10) == []


def test_agreement_drop_without_labels():
    before = {k: v for k, v in BEFORE.items() if k != "accuracy"}
    after = dict(HEALTHY_AFTER, accuracy=None, agreement=dict(HEALTHY_AFTER["agreement"], top1_agreement=0.24))
    (v,) = [v for v in compute_verdicts(before, after) if v.kind == "quality_drop"]
    assert "top-1 agreement with the original model is 24.00% on 2,000 samples" in v.message


def test_near_chance_baseline():
    before = dict(BEFORE, accuracy=0.089)
    after = dict(HEALTHY_AFTER, accuracy=0.80)  # "+71 points" from an untrained model
    assert kinds(before, after, num_classes=10) == ["near_chance"]
    assert kinds(before, None, num_classes=10) == ["near_chance"]  # analyze, no compression
    assert kinds(dict(BEFORE, accuracy=0.20), after, num_classes=10) == []
    assert kinds(before, after) == []  # without the class count there is no chance level to compare


def test_calibration_short():
    step = dict(QUANTIZE_STEP, info=dict(QUANTIZE_STEP["info"], calibration_samples=64))
    (v,) = [v for v in compute_verdicts(BEFORE, HEALTHY_AFTER, [step]) if v.severity == "warning"]
    assert v.kind == "calibration_short" and "64 samples" in v.message and "asked for 512" in v.message


def test_low_sqnr():
    after = dict(HEALTHY_AFTER, agreement=dict(HEALTHY_AFTER["agreement"], sqnr_db=0.3))
    assert kinds(BEFORE, after) == ["low_sqnr"]
    assert "0.3 dB on 2,000 samples" in compute_verdicts(BEFORE, after)[0].message


def test_larger_and_slower_on_the_measured_runtime():
    assert kinds(BEFORE, dict(HEALTHY_AFTER, bytes=5000)) == ["larger"]
    (v,) = compute_verdicts(BEFORE, dict(HEALTHY_AFTER, latency_ms=2.4))
    assert v.kind == "slower" and "onnxruntime" in v.message and "1.20x" in v.message
    # timed on different runtimes: no comparison, no verdict
    assert kinds(BEFORE, dict(HEALTHY_AFTER, latency_ms=2.4, latency_runtime="pytorch-eager")) == []
    assert kinds(BEFORE, dict(HEALTHY_AFTER, macs=5000, latency_ms=2.0)) == ["not_faster"]


def test_rounding_zeros_are_not_called_sparsity():
    after = dict(HEALTHY_AFTER, nonzero_params=600)
    assert [v.kind for v in compute_verdicts(BEFORE, after, [QUANTIZE_STEP])] == ["batchnorm_folded"]
    pruning = {"index": 0, "technique": "magnitude_pruning", "info": {}, "config": {}}
    facts = compute_verdicts(BEFORE, after, [pruning])
    assert [(v.kind, v.severity) for v in facts] == [("unstructured_sparsity", "info")]


def test_verdicts_are_in_report_json_and_strict_sees_the_warnings():
    report = Report(model="m", before=BEFORE, after=dict(HEALTHY_AFTER, accuracy=0.5), max_drop=0.05)
    data = json.loads(report.to_json())
    assert data["verdicts"][0]["kind"] == "quality_drop" and data["verdicts"][0]["severity"] == "warning"
    assert data["max_drop"] == 0.05
    again = Report.from_dict(data)
    assert [v.kind for v in again.warnings()] == ["quality_drop"]
    assert "WARNING: accuracy fell 40.00 points" in report.render()


def test_table_shows_sample_counts_and_agreement():
    text = Report(model="m", before=BEFORE, after=HEALTHY_AFTER).render()
    assert "accuracy (2,000 samples)" in text
    assert "top-1 agreement (2000 samples)" in text and "99.00%" in text and "31.0 dB" in text


def test_top5_agreement():
    ref = torch.tensor([[5.0, 4, 3, 2, 1, 0], [0, 1, 2, 3, 4, 5]])
    cand = torch.tensor([[0.0, 1, 2, 3, 4, 5], [0, 1, 2, 3, 4, 5]])  # row 0: class 0 ranks last
    assert top_k_agreement(ref, cand, k=5) == pytest.approx(0.5)
    assert top_k_agreement(ref[:, :5], cand[:, :5], k=5) is None
    model = torch.nn.Linear(4, 8)
    result = compare_models(model, model, torch.randn(16, 4))
    assert result.top5_agreement == 1.0 and result.top1_agreement == 1.0


def test_float_kernels_fires_when_quantized_layers_run_float_and_not_when_all_are_integer():
    census = {"runtime": "onnxruntime", "integer_activation_layers": 6, "weight_only_layers": 0}
    healthy = dict(HEALTHY_AFTER, kernels=dict(census, integer_mac_kernels=6, float_mac_kernels=0))
    assert "float_kernels" not in kinds(BEFORE, healthy, [QUANTIZE_STEP])
    broken = dict(HEALTHY_AFTER, kernels=dict(census, integer_mac_kernels=2, float_mac_kernels=4))
    (verdict,) = [v for v in compute_verdicts(BEFORE, broken, [QUANTIZE_STEP]) if v.kind == "float_kernels"]
    assert verdict.severity == "warning" and "4 quantized layers compute in float" in verdict.message
    assert verdict.measured["integer_mac_kernels"] == 2


def test_weight_only_layers_are_an_info_fact_not_a_warning():
    census = {"runtime": "onnxruntime", "integer_activation_layers": 0, "weight_only_layers": 3}
    after = dict(HEALTHY_AFTER, kernels=dict(census, integer_mac_kernels=0, float_mac_kernels=3))
    verdicts = compute_verdicts(BEFORE, after, [QUANTIZE_STEP])
    (fact,) = [v for v in verdicts if v.kind == "weight_only"]
    assert fact.severity == "info" and "float_kernels" not in kinds(BEFORE, after, [QUANTIZE_STEP])
