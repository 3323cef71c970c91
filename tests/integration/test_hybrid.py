"""Hybrid recipes: each stage keeps the previous stage's gains."""

import pytest
import torch
from torch import nn

import torchslim as ts
from torchslim.measure import count_layer_parameters


def digits_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


def trained_digits_model(data):
    model = digits_model()
    ts.train.train(model, data.train, config=ts.train.TrainConfig(epochs=8, lr=3e-3), seed=0, quiet=True)
    return model.eval()


def zeros_per_layer(model):
    return {
        name: layer.params - layer.nonzero
        for name, layer in count_layer_parameters(model).items()
        if layer.params > 100
    }


def test_masks_stay_frozen_through_kd_and_qat():
    data = ts.data.load_splits("digits", batch_size=64, seed=0)
    model = trained_digits_model(data)
    recipe = ts.Recipe.from_yaml("""
steps:
  - technique: magnitude_pruning
    targets: {types: [Linear], exclude: ["5"]}
    config: {sparsity: 0.7, train: {epochs: 0}}
  - technique: distill
    config: {temperature: 4.0, alpha: 0.7, train: {epochs: 2, lr: 0.002}}
  - technique: quantize
    config: {mode: qat, weights: {bits: 8}, activations: {mode: auto}, train: {epochs: 1, lr: 0.0005}}
""")
    result = ts.compress(model, data, recipe=recipe, repeats=1, quiet=True, runtime="pytorch")
    report = result.report.to_dict()
    weights = {"1": 64 * 64, "3": 64 * 32}
    zeros = {
        row["name"]: row["params"] - row["nonzero_params"]
        for row in report["after"]["layers"]
        if row["name"] in weights
    }
    # global 70% over both layers: at least 70% of their weights are still zero after KD and QAT
    assert sum(zeros.values()) >= 0.7 * sum(weights.values()), zeros
    assert all(row["weight_bits"] == 8 for row in report["after"]["layers"] if row["name"] in ("1", "3", "5"))
    assert report["before"]["accuracy"] - report["after"]["accuracy"] < 0.05


def test_quantization_keeps_pruned_shapes():
    data = ts.data.load_splits("fashion-mnist", batch_size=64, train_samples=256, eval_samples=128, seed=0)
    model = ts.models.build_model("fmnist-cnn", seed=0)
    recipe = ts.Recipe.from_yaml("""
steps:
  - technique: channel_pruning
    targets: {exclude: [classifier]}
    config: {ratio: 0.5, train: {epochs: 0}}
  - technique: quantize
    config: {weights: {bits: 8}, activations: {mode: auto}}
""")
    result = ts.compress(model, data, recipe=recipe, repeats=1, quiet=True, runtime="pytorch")
    after = {row["name"]: row for row in result.report.after["layers"]}
    assert after["features.conv2"]["params"] == 32 * 16 * 9 + 32
    assert after["features.conv2"]["weight_bits"] == 8
    assert result.report.after["macs"] < 0.3 * result.report.before["macs"]


def test_pruned_int8_artifact_reloads_identically_and_exports(tmp_path):
    import subprocess
    import sys
    import textwrap

    from torchslim.deploy import check_parity
    from torchslim.models import example_input

    data = ts.data.load_splits("fashion-mnist", batch_size=64, train_samples=256, eval_samples=128, seed=0)
    recipe = ts.Recipe.from_yaml("""
steps:
  - technique: channel_pruning
    config: {ratio: 0.5, train: {epochs: 0}}
    targets: {exclude: [classifier]}
  - technique: quantize
    config: {weights: {bits: 8}, activations: {mode: auto}}
""")
    result = ts.compress(
        ts.models.build_model("fmnist-cnn", seed=0), data, recipe=recipe, repeats=1, quiet=True, runtime="pytorch"
    )
    out = result.save(tmp_path / "artifact")
    x = example_input(result.model, batch_size=8, seed=2)
    torch.save(x, tmp_path / "x.pt")
    with torch.no_grad():
        torch.save(result.model(x), tmp_path / "y.pt")
    script = textwrap.dedent(f"""
        import torch, torchslim as ts
        m = ts.load({str(out)!r})
        x = torch.load({str(tmp_path / "x.pt")!r}, weights_only=True)
        y = torch.load({str(tmp_path / "y.pt")!r}, weights_only=True)
        with torch.no_grad():
            print("IDENTICAL" if torch.equal(m(x), y) else "DIFFERENT")
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().endswith("IDENTICAL")
    facts = result.export_onnx(tmp_path / "m.onnx")
    assert facts.quantized
    parity = check_parity(result.model, tmp_path / "m.onnx", x)
    assert parity.ok and parity.max_diff_in_steps <= 2


def test_gptq_after_magnitude_pruning_keeps_the_zeros():
    data = ts.data.load_splits("digits", batch_size=64, seed=0)
    model = trained_digits_model(data)
    recipe = ts.Recipe.from_yaml("""
steps:
  - technique: magnitude_pruning
    config: {sparsity: 0.6, scope: layer, train: {epochs: 0}}
    targets: {types: [Linear]}
  - technique: quantize
    config: {weights: {bits: 4, granularity: per_channel, range: gptq}, activations: null}
""")
    result = ts.compress(model, data, recipe=recipe, repeats=1, quiet=True, runtime="pytorch")
    rows = {row["name"]: row for row in result.report.after["layers"]}
    for name, (fan_in, fan_out) in {"1": (64, 64), "3": (64, 32), "5": (32, 10)}.items():
        assert rows[name]["params"] - rows[name]["nonzero_params"] >= int(0.6 * fan_in * fan_out)


def test_target_typo_in_a_later_step_fails_before_any_work():
    from torchslim.core import TargetError

    data = ts.data.load_splits("digits", batch_size=64, seed=0)
    recipe = ts.Recipe.from_yaml("""
steps:
  - technique: finetune
    config: {train: {epochs: 50}}
  - technique: quantize
    targets: {names: [clasifier]}
""")
    import time

    started = time.perf_counter()
    with pytest.raises(TargetError, match=r"steps\[1\] \(quantize\).*'clasifier'"):
        ts.compress(digits_model(), data, recipe=recipe, repeats=1, quiet=True, runtime="pytorch")
    assert time.perf_counter() - started < 30  # 50 epochs were not run first
