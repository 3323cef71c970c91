"""Every shipped recipe loads, validates and runs end to end on a small Fashion-MNIST slice."""

import pytest

import torchslim as ts
from torchslim.recipes import shipped_recipe, shipped_recipe_names


def test_the_issue_recipes_are_shipped():
    assert {"int8", "int4-weights", "prune-int8", "prune-kd-int8", "finetune", "prune-sparse", "prune-channels"} <= set(
        shipped_recipe_names()
    )


@pytest.mark.parametrize("name", shipped_recipe_names())
def test_shipped_recipe_runs(name):
    data = ts.data.load_splits("fashion-mnist", batch_size=64, train_samples=256, eval_samples=128, seed=0)
    model = ts.models.build_model("fmnist-cnn", seed=0)
    recipe = shipped_recipe(name)
    assert ts.Recipe.from_yaml(recipe.to_yaml()) == recipe
    result = ts.compress(model, data, recipe=recipe, repeats=1, quiet=True)
    before, after = result.report.before, result.report.after
    assert [s["technique"] for s in result.report.steps] == [s.technique for s in recipe.steps]
    assert before["latency_runtime"] == after["latency_runtime"]
    techniques = {s.technique for s in recipe.steps}
    if "quantize" in techniques:
        assert after["bytes"] < 0.3 * before["bytes"]
        bits = recipe.steps[-1].config.weights.bits
        rows = [row for row in after["layers"] if row["params"]]
        assert {row["weight_bits"] for row in rows if row["weight_bits"] != 32} == {bits}
        # with int8 inputs the 1-channel first convolution stays float (Quantize.quantize_single_channel_convs)
        kept = {row["name"] for row in rows if row["weight_bits"] == 32}
        assert kept <= {"features.conv1"}
        assert all("one input channel" in result.report.steps[-1]["skipped"][name] for name in kept)
    if "channel_pruning" in techniques:
        assert after["macs"] < 0.35 * before["macs"]
    if "magnitude_pruning" in techniques:
        assert after["nonzero_params"] < 0.2 * before["nonzero_params"]
        assert after["bytes"] < 0.35 * before["bytes"]
