import json

import pytest

from torchslim.cli.main import main


def run(args, capsys):
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err


def test_list(capsys):
    code, out, _ = run(["list", "--json"], capsys)
    assert code == 0
    listing = json.loads(out)
    assert "finetune" in listing["techniques"]
    assert {"lenet-300-100", "fmnist-cnn", "efficientnet-lite0", "minilm-l6"} <= set(listing["models"])
    assert {"fashion-mnist", "digits", "tweets"} <= set(listing["datasets"])
    assert "finetune" in listing["recipes"]


def test_analyze_json_keys(capsys):
    code, out, _ = run(["analyze", "lenet-300-100", "--json", "--repeats", "3"], capsys)
    assert code == 0
    stats = json.loads(out)
    for key in ("params", "nonzero_params", "macs", "bytes", "latency_ms", "layers", "energy_uj", "energy_source"):
        assert key in stats
    assert stats["params"] == 266_610
    assert stats["macs"] == 266_200
    assert stats["bytes"] > 266_610 * 4


def test_analyze_with_data_has_accuracy(capsys):
    code, out, _ = run(
        ["analyze", "lenet-300-100", "--data", "fashion-mnist", "--eval-samples", "256", "--json", "--repeats", "2"],
        capsys,
    )
    assert code == 0
    stats = json.loads(out)
    assert 0.0 <= stats["accuracy"] <= 1.0


def test_unknown_model_is_clear(capsys):
    code, _, err = run(["analyze", "lenet-300"], capsys)
    assert code == 2
    assert "Unknown model 'lenet-300'" in err and "Did you mean" in err


def test_missing_data_root_is_clear(capsys, tmp_path):
    code, _, err = run(
        ["analyze", "lenet-300-100", "--data", "fashion-mnist", "--data-root", str(tmp_path / "nowhere")], capsys
    )
    assert code == 2
    assert "nowhere" in err and "apt-get install dataset-fashion-mnist" in err


def test_python_dash_m_entry_point():
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "torchslim", "list"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "finetune" in result.stdout and "fmnist-cnn" in result.stdout


def test_train_and_compress_round_trip(capsys, tmp_path):
    out = tmp_path / "trained"
    code, _, err = run(
        [
            "train",
            "lenet-300-100",
            "--data",
            "fashion-mnist",
            "--epochs",
            "1",
            "--train-samples",
            "512",
            "--eval-samples",
            "256",
            "--out",
            str(out),
            "--quiet",
        ],
        capsys,
    )
    assert code == 0, err
    assert (out / "model.safetensors").is_file() and (out / "report.json").is_file()
    recipe = tmp_path / "r.yaml"
    recipe.write_text("version: 1\nsteps:\n  - technique: finetune\n    config: {train: {epochs: 1, lr: 0.0005}}\n")
    code, stdout, err = run(
        [
            "compress",
            str(out),
            "--data",
            "fashion-mnist",
            "--recipe",
            str(recipe),
            "--out",
            str(tmp_path / "c"),
            "--train-samples",
            "256",
            "--eval-samples",
            "256",
            "--json",
            "--set",
            "steps.0.config.train.lr=0.0001",
        ],
        capsys,
    )
    assert code == 0, err
    report = json.loads(stdout)
    assert set(report) >= {"before", "after", "steps"}
    assert report["steps"][0]["technique"] == "finetune"
    assert report["steps"][0]["config"]["train"]["lr"] == 0.0001
    for side in ("before", "after"):
        for key in ("accuracy", "params", "nonzero_params", "macs", "bytes", "latency_ms"):
            assert report[side][key] is not None
    assert json.loads((tmp_path / "c" / "report.json").read_text())["steps"][0]["technique"] == "finetune"
    assert "data:image/png;base64," in (tmp_path / "c" / "report.html").read_text()


@pytest.mark.parametrize(
    "recipe_text, message",
    [
        ("steps:\n  - technique: finetun\n", "Did you mean 'finetune'"),
        ("steps:\n  - technique: finetune\n    config: {train: {epoch: 1}}\n", "Did you mean 'epochs'"),
        ("steps:\n  - technique: finetune\n    config: {train: {lr: -1}}\n", "lr"),
        ("steps:\n  - technique: finetune\n    config: {lr: -1}\n", "lr"),  # an old flat key, moved to train.lr
        ("steps:\n  - technique: finetune\n    config: {train: {epochs: many}}\n", "epochs"),
        ("steps:\n  - !!python/object/apply:os.system ['echo hi']\n", "not valid YAML"),
    ],
)
def test_bad_recipes_write_nothing(capsys, tmp_path, recipe_text, message):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text(recipe_text)
    code, _, err = run(
        [
            "compress",
            "lenet-300-100",
            "--data",
            "fashion-mnist",
            "--recipe",
            str(recipe),
            "--out",
            str(tmp_path / "out"),
        ],
        capsys,
    )
    assert code == 2
    assert message in err
    assert not (tmp_path / "out").exists()


def test_corrupt_weights_file(capsys, tmp_path):
    bad = tmp_path / "w.safetensors"
    bad.write_bytes(b"not safetensors at all")
    code, _, err = run(["analyze", "lenet-300-100", "--weights", str(bad)], capsys)
    assert code == 2
    assert "not a valid safetensors file" in err


def test_analyze_sensitivity_writes_curves(capsys, tmp_path):
    code, out, err = run(
        [
            "analyze",
            "lenet-300-100",
            "--data",
            "digits",
            "--sensitivity",
            "--sparsities",
            "0.5,0.9",
            "--out",
            str(tmp_path / "s"),
            "--json",
            "--repeats",
            "1",
        ],
        capsys,
    )
    # digits images are 8x8: lenet-300-100 expects 28x28, so this must fail clearly, not crash
    assert code == 2
    assert "cannot run on the test data of 'digits' (samples of shape (1, 8, 8))" in err
    assert not (tmp_path / "s").exists()
    code, out, err = run(
        [
            "analyze",
            "lenet-300-100",
            "--data",
            "fashion-mnist",
            "--eval-samples",
            "200",
            "--sensitivity",
            "--sparsities",
            "0.5,0.9",
            "--out",
            str(tmp_path / "s"),
            "--json",
            "--repeats",
            "1",
        ],
        capsys,
    )
    assert code == 0, err
    stats = json.loads(out)
    assert stats["sensitivity"]["sparsities"] == [0.5, 0.9]
    assert set(stats["sensitivity"]["curves"]) == {"fc1", "fc2", "classifier"}
    assert (tmp_path / "s" / "sensitivity.png").stat().st_size > 1000
    assert "data:image/png;base64" in (tmp_path / "s" / "report.html").read_text()


def test_int8_recipe_then_export_with_parity(capsys, tmp_path):
    code, out, err = run(
        [
            "compress",
            "lenet-300-100",
            "--data",
            "fashion-mnist",
            "--recipe",
            "int8",
            "--out",
            str(tmp_path / "q"),
            "--train-samples",
            "128",
            "--eval-samples",
            "256",
            "--json",
            "--quiet",
        ],
        capsys,
    )
    assert code == 0, err
    report = json.loads(out)
    assert report["before"]["latency_runtime"] == report["after"]["latency_runtime"] == "onnxruntime"
    assert report["after"]["bytes"] < 0.3 * report["before"]["bytes"]
    assert all(row["weight_bits"] == 8 for row in report["after"]["layers"] if row["params"])
    code, out, err = run(["export", str(tmp_path / "q"), "--onnx", str(tmp_path / "q.onnx"), "--json"], capsys)
    assert code == 0, err
    summary = json.loads(out)
    assert summary["quantized"] and summary["parity"]["ok"]
    assert summary["parity"]["max_diff_in_steps"] <= 2
    assert (
        "QGemm" in summary["onnxruntime_ops"]["integer_ops"]
        or "MatMulInteger" in summary["onnxruntime_ops"]["integer_ops"]
    )


def test_demo_small_end_to_end(capsys, tmp_path):
    args = [
        "demo",
        "--out",
        str(tmp_path / "demo"),
        "--train-samples",
        "512",
        "--eval-samples",
        "256",
        "--epochs",
        "1",
        "--distill-epochs",
        "1",
        "--json",
    ]
    code, out, err = run(args, capsys)
    assert code == 0, err
    report = json.loads(out)
    assert [s["technique"] for s in report["steps"]] == ["channel_pruning", "distill", "quantize"]
    assert report["after"]["macs"] < 0.3 * report["before"]["macs"]
    assert report["after"]["bytes"] < report["before"]["bytes"] / 8
    assert (tmp_path / "demo" / "report.html").is_file()
    assert (tmp_path / "demo" / "prune-kd-int8" / "model.safetensors").is_file()
    assert [p.name for p in (tmp_path / "demo").iterdir() if p.name.startswith(".")] == []  # checkpoints gone
    code, out, _ = run(args, capsys)  # second run reuses the baseline
    assert code == 0
    assert any("reused the cached baseline" in note for note in json.loads(out)["notes"])
