"""End-to-end checks of the foundation: artifacts across processes, MACs, compress on real data."""

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import torchslim as ts
from torchslim.models import build_model, example_input


def test_artifact_reloads_bit_identical_in_fresh_process(tmp_path):
    model = build_model("fmnist-resnet", seed=3)
    x = example_input(model, batch_size=4, seed=1)
    torch.save(x, tmp_path / "x.pt")
    with torch.no_grad():
        torch.save(model(x), tmp_path / "y.pt")
    ts.save(model, tmp_path / "artifact")
    script = textwrap.dedent(
        f"""
        import torch, torchslim as ts
        model = ts.load({str(tmp_path / "artifact")!r})
        x = torch.load({str(tmp_path / "x.pt")!r}, weights_only=True)
        y = torch.load({str(tmp_path / "y.pt")!r}, weights_only=True)
        with torch.no_grad():
            out = model(x)
        print("IDENTICAL" if torch.equal(out, y) else "DIFFERENT")
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("IDENTICAL")


def test_efficientnet_macs_match_flop_counter():
    model = build_model("efficientnet-lite0")
    stats = ts.analyze(model, repeats=1)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.randn(1, 3, 224, 224))
    reference_macs = counter.get_total_flops() / 2
    assert stats.params == 4_652_008
    assert abs(stats.macs - reference_macs) / reference_macs < 0.05
    assert 0.35e9 < stats.macs < 0.45e9


def test_compress_with_finetune_on_digits(tmp_path):
    data = ts.data.load_splits("digits", batch_size=64, seed=0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    before = [p.clone() for p in model.parameters()]
    recipe = ts.Recipe.from_yaml("steps:\n  - technique: finetune\n    config: {train: {epochs: 3, lr: 0.01}}\n")
    result = ts.compress(model, data, recipe=recipe, repeats=2, quiet=True)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=False)), (
        "compress must not touch the user's model"
    )
    report = result.report.to_dict()
    assert report["after"]["accuracy"] > report["before"]["accuracy"] + 0.3
    assert report["steps"][0]["technique"] == "finetune"
    out = result.save(tmp_path / "run")
    assert json.loads((out / "report.json").read_text())["after"]["params"] == 64 * 32 + 32 + 32 * 10 + 10
    again = ts.load(
        out,
        model=torch.nn.Sequential(
            torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10)
        ),
    )
    x = torch.randn(3, 1, 8, 8)
    assert torch.equal(again(x), result.model(x))


def test_shipped_recipe_by_name():
    from torchslim.api import load_recipe
    from torchslim.core import UnknownNameError

    assert load_recipe("finetune").steps[0].technique == "finetune"
    with pytest.raises(UnknownNameError, match="Did you mean 'finetune'"):
        load_recipe("fintune")


@pytest.mark.slow
def test_fmnist_cnn_two_epochs_reaches_89_percent():
    data = ts.data.load_splits("fashion-mnist", batch_size=128, seed=0)
    model = build_model("fmnist-cnn", seed=0)
    ts.train.train(model, data.train, config=ts.train.TrainConfig(epochs=2, lr=1e-3), seed=0, quiet=True)
    accuracy = ts.measure.evaluate(model.eval(), data.test).accuracy
    assert accuracy >= 0.89
