"""`--grid-intensity` reaches the run's energy in `torchslim train` and `torchslim compress` reports."""

from __future__ import annotations

import json
from pathlib import Path

from torchslim.cli.main import main
from torchslim.measure.run_energy import RunEnergy


def run_cli(args: list[str]) -> int:
    try:
        main(args)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_train_and_compress_record_their_energy_at_the_given_grid_intensity(tmp_path: Path) -> None:
    trained = tmp_path / "trained"
    common = ["--data", "fashion-mnist", "--train-samples", "256", "--eval-samples", "128", "--quiet"]
    assert (
        run_cli(["train", "lenet-300-100", *common, "--epochs", "1", "--out", str(trained), "--grid-intensity", "100"])
        == 0
    )
    report = json.loads((trained / "report.json").read_text())
    run = RunEnergy.from_dict(report["energy"]["run"])
    assert report["energy"]["scope"] == "training"
    assert run.grid_intensity == 100.0 and run.joules > 0
    assert run.grams_co2e == report["energy"]["run"]["grams_co2e"]

    recipe = tmp_path / "prune.yaml"
    recipe.write_text("steps:\n  - technique: channel_pruning\n    config: {ratio: 0.5, train: {epochs: 0}}\n")
    compressed = tmp_path / "compressed"
    args = ["compress", str(trained), *common, "--recipe", str(recipe), "--out", str(compressed)]
    assert run_cli([*args, "--grid-intensity", "50"]) == 0
    report = json.loads((compressed / "report.json").read_text())
    assert report["energy"]["run"]["grid_intensity"] == 50.0
    (estimated, *_) = report["energy"]["payback"]
    assert estimated["basis"] == "estimated" and estimated["saving_uj"] > 0
    assert isinstance(estimated["inferences"], int)
