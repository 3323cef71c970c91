"""Lottery tickets: masks per level, rewinding, controls, kill-and-resume, the ticket artifact."""

import json

import pytest
import torch
from lottery_toys import Kill, SimulatedKill, StartWeights, tiny_data, tiny_model

import torchslim as ts
from torchslim.core import ConfigError, Context, Recipe, Step
from torchslim.core.errors import OutputError
from torchslim.lottery import LotteryConfig, RewindPoint, level_masks, prunable_layers, random_masks, run_lottery
from torchslim.pruning import apply_mask
from torchslim.train import TrainConfig, train_in_context

HIDDEN = ("body.1", "body.3")
TRAIN = {"epochs": 2, "lr": 3e-3}


def _masked_copy(model, masks):
    import copy

    net = copy.deepcopy(model)
    for name, mask in masks.items():
        apply_mask(net.get_submodule(name), mask)
    return net


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_masks_shrink_by_the_rate_and_the_output_layer_at_half(scope):
    model = tiny_model()
    layers = prunable_layers(model, None)
    assert layers == [*HIDDEN, "classifier"]
    sizes = {n: model.get_submodule(n).weight.numel() for n in layers}
    rate, masks = 0.3, {}
    for level in (1, 2, 3):
        net = _masked_copy(model, masks)
        new = level_masks(
            net, layers, level=level, rate=rate, output_rate=rate / 2, output_layer="classifier", scope=scope
        )
        for name in layers:
            if name in masks:  # masks only shrink
                assert not bool((new[name] & ~masks[name]).any())
        hidden_kept = sum(int(new[n].sum()) for n in HIDDEN)
        hidden_total = sum(sizes[n] for n in HIDDEN)
        assert abs(hidden_kept - (1 - rate) ** level * hidden_total) <= len(HIDDEN)
        if scope == "layer":
            for name in HIDDEN:
                assert abs(int(new[name].sum()) - round((1 - rate) ** level * sizes[name])) <= 1
        assert abs(int(new["classifier"].sum()) - round((1 - rate / 2) ** level * sizes["classifier"])) <= 1
        masks = new


def test_random_masks_keep_the_same_count_per_layer():
    model = tiny_model()
    layers = prunable_layers(model, None)
    masks = level_masks(model, layers, level=2, rate=0.5, output_rate=0.25, output_layer="classifier", scope="layer")
    chance = random_masks(masks, seed=3)
    for name in layers:
        assert int(chance[name].sum()) == int(masks[name].sum())
        assert not torch.equal(chance[name], masks[name])
    assert all(torch.equal(chance[n], random_masks(masks, seed=3)[n]) for n in layers)


def test_rewind_point_parsing():
    assert RewindPoint.parse("0").steps(10) == 0
    assert RewindPoint.parse("500it").steps(10) == 500
    assert RewindPoint.parse("2ep").steps(10) == 20
    for bad in ("5", "1 epoch", "-3it", "ep"):
        with pytest.raises(ConfigError, match="rewind"):
            LotteryConfig(rewind=bad)
    with pytest.raises(ConfigError, match="rate"):
        LotteryConfig(rate=1.0)
    with pytest.raises(ConfigError, match="controls"):
        LotteryConfig(controls=("random", "random"))


def test_rewind_past_the_end_of_training_is_refused():
    config = LotteryConfig(levels=1, rewind="5ep", train=TrainConfig(epochs=2))
    with pytest.raises(ConfigError, match="rewind"):
        run_lottery(tiny_model(), config, context=Context(data=tiny_data()))


def test_rewinding_to_init_restores_the_saved_weights_of_the_survivors(tmp_path):
    model, watch = tiny_model(), StartWeights()
    result = ts.lottery(model, tiny_data(), levels=2, rate=0.4, train=TRAIN, out=tmp_path, hooks=[watch])
    init = {k: v.clone() for k, v in model.state_dict().items()}
    # runs: level 0 dense; level 1 ticket, reinit, random; level 2 ticket, reinit, random
    assert len(watch.runs) == 7
    for level, run in ((1, 1), (2, 4)):
        masks = ts.io.load_safetensors(tmp_path / f"level_{level:02d}" / "masks.safetensors")
        ticket_start, reinit_start, random_start = watch.runs[run], watch.runs[run + 1], watch.runs[run + 2]
        for name, mask in masks.items():
            key = f"{name}.weight"
            assert torch.equal(ticket_start[key], init[key] * mask)  # survivors back at θ_0
            assert torch.equal(ticket_start[key] != 0, mask)
            assert not torch.allclose(reinit_start[key], init[key] * mask)  # fresh weights, same mask
            assert torch.equal(reinit_start[key] != 0, mask)
            assert int((random_start[key] != 0).sum()) == int(mask.sum())  # same sparsity, other mask
    assert result.records[0]["weights_remaining"] == 1.0
    assert result.records[2]["weights_remaining"] < result.records[1]["weights_remaining"] < 1.0


def test_late_rewinding_restores_the_weights_after_k_steps(tmp_path):
    data, watch = tiny_data(), StartWeights()
    ts.lottery(tiny_model(), data, levels=1, rate=0.4, rewind="3it", train=TRAIN, out=tmp_path, hooks=[watch])
    # θ_k is the dense run after 3 steps: train the same model 3 steps with the same seed
    reference = tiny_model()
    train_in_context(reference, config=TrainConfig(**TRAIN, max_steps=3), context=Context(data=data), technique="ref")
    saved = ts.io.load_safetensors(tmp_path / "rewind.safetensors")
    masks = ts.io.load_safetensors(tmp_path / "level_01" / "masks.safetensors")
    for key, value in reference.state_dict().items():
        assert torch.equal(saved[key], value)
    for name, mask in masks.items():
        key = f"{name}.weight"
        assert torch.equal(watch.runs[1][key], saved[key] * mask)
    # the pruned levels train T - k steps: the same total budget as the dense run
    level = json.loads((tmp_path / "level_01" / "metrics.json").read_text())
    dense = json.loads((tmp_path / "level_00" / "metrics.json").read_text())
    steps = {level[branch]["steps"] for branch in ("ticket", "reinit", "random")}
    assert steps == {dense["ticket"]["steps"] - 3}


def test_controls_have_the_ticket_sparsity_at_every_level(tmp_path):
    result = ts.lottery(tiny_model(), tiny_data(), levels=3, rate=0.5, train=TRAIN, out=tmp_path)
    for level in (1, 2, 3):
        folder = tmp_path / f"level_{level:02d}"
        masks = ts.io.load_safetensors(folder / "masks.safetensors")
        chance = ts.io.load_safetensors(folder / "random_masks.safetensors")
        assert {n: int(m.sum()) for n, m in masks.items()} == {n: int(m.sum()) for n, m in chance.items()}
        record = result.records[level]
        assert {"ticket", "reinit", "random"} <= set(record)
        assert record["ticket"]["steps"] == record["reinit"]["steps"] == record["random"]["steps"]
    curves = result.curves()
    assert len(curves["weights_remaining"]) == 4 and all(v is not None for v in curves["reinit"])


def test_a_killed_run_resumes_at_that_level_with_the_same_masks(tmp_path):
    data, train = tiny_data(), {**TRAIN, "checkpoint_every": 3}
    options = {"levels": 3, "rate": 0.4, "train": train, "controls": ["random"]}
    ts.lottery(tiny_model(), data, out=tmp_path / "whole", hooks=[Kill(None)], **options)
    # training run 5 is level 2's random control; it dies at step 5, after a checkpoint at step 3
    with pytest.raises(SimulatedKill):
        ts.lottery(tiny_model(), data, out=tmp_path / "killed", hooks=[Kill(5, at_step=5)], **options)
    assert (tmp_path / "killed" / "level_01" / "metrics.json").is_file()
    assert not (tmp_path / "killed" / "level_02" / "metrics.json").exists()
    resumed = ts.lottery(tiny_model(), data, out=tmp_path / "killed", hooks=[Kill(None)], **options)
    assert resumed.loaded_levels == [0, 1] and resumed.computed_levels == [2, 3]
    for level in (1, 2, 3):
        whole = ts.io.load_safetensors(tmp_path / "whole" / f"level_{level:02d}" / "masks.safetensors")
        again = ts.io.load_safetensors(tmp_path / "killed" / f"level_{level:02d}" / "masks.safetensors")
        assert whole.keys() == again.keys()
        assert all(torch.equal(whole[k], again[k]) for k in whole)
    assert not (tmp_path / "killed" / "checkpoints").exists()


def test_a_directory_of_another_experiment_is_refused(tmp_path):
    ts.lottery(tiny_model(), tiny_data(), levels=1, rate=0.4, train=TRAIN, out=tmp_path)
    with pytest.raises(OutputError, match="rate"):
        ts.lottery(tiny_model(), tiny_data(), levels=1, rate=0.5, train=TRAIN, out=tmp_path)


def test_the_ticket_artifact_reloads_sparse(tmp_path):
    model = tiny_model()
    result = ts.lottery(model, tiny_data(), levels=2, rate=0.5, train=TRAIN, out=tmp_path)
    for name in ("lottery.json", "lottery.png", "report.html"):
        assert (tmp_path / name).stat().st_size > 0
    loaded = ts.load(tmp_path / "ticket", model=tiny_model(seed=1))
    x = torch.randn(5, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded(x), result.ticket.eval()(x))
    kept = sum(int((loaded.get_submodule(n).weight != 0).sum()) for n in (*HIDDEN, "classifier"))
    assert kept == result.records[-1]["weights_kept"]
    data = json.loads((tmp_path / "lottery.json").read_text())
    assert data["ticket_weights_remaining"] == pytest.approx(result.weights_remaining)
    assert "reinit" in result.render() and "weights left" in result.render()
    assert model.state_dict().keys() == tiny_model().state_dict().keys()  # the input kept no masks


def test_recipe_runs_lottery_then_quantize():
    config = LotteryConfig(levels=1, rate=0.5, controls=(), train=TrainConfig(**TRAIN))
    recipe = Recipe([Step(config), Step(ts.quantization.Quantize())])
    result = ts.compress(tiny_model(), tiny_data(), recipe=recipe, repeats=1, quiet=True, runtime="pytorch")
    steps = result.report.steps
    assert [s["technique"] for s in steps] == ["lottery", "quantize"]
    assert steps[0]["info"]["weights_remaining"] < 0.6
    assert result.report.after["nonzero_params"] < result.report.before["nonzero_params"]
    assert result.report.after["bytes"] < result.report.before["bytes"]
    assert Recipe.from_yaml(recipe.to_yaml()) == recipe


def test_the_run_records_its_energy_labelled(tmp_path):
    result = ts.lottery(tiny_model(), tiny_data(), levels=1, rate=0.4, train=TRAIN, grid_intensity=100.0)
    energy = result.energy
    assert energy is not None and energy["joules"] > 0 and energy["grid_intensity"] == 100.0
    assert energy["label"].startswith("measured") == energy["measured"]
    assert "energy of this run" in result.render() and result.to_dict()["energy"] == energy
