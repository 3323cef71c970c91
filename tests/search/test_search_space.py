"""Bit-width sensitivity, ranges from sensitivity, recipes from points (rerunnable YAML)."""

from __future__ import annotations

import copy

import optuna
import torch

from torchslim.core.recipe import Recipe
from torchslim.pruning import SensitivityResult
from torchslim.search import BitSensitivity, bit_sensitivity, build_space
from torchslim.search.bits import rtn_weight


def test_rtn_weight_error_shrinks_with_bits():
    w = torch.randn(16, 32, generator=torch.Generator().manual_seed(0))
    errors = [float((rtn_weight(w, b) - w).pow(2).mean()) for b in (2, 4, 8)]
    assert errors[0] > errors[1] > errors[2]
    assert torch.unique(rtn_weight(w, 2)[0]).numel() <= 4  # 2 bits: at most 4 levels per channel


def test_bit_sensitivity_curves_and_model_unchanged():
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    before = copy.deepcopy(model.state_dict())
    x = torch.randn(64, 8, generator=torch.Generator().manual_seed(1))
    reference = model(x).detach()

    def quality(m):  # higher is better: minus the output error against the fp32 model
        with torch.no_grad():
            return -float((m(x) - reference).pow(2).mean())

    result = bit_sensitivity(model, quality, bits=(2, 4, 8))
    assert set(result.curves) == {"0", "2"} and result.bits == [2, 4, 8]
    for curve in result.curves.values():
        assert curve[0] < curve[2] <= result.baseline + 1e-12  # 2 bits hurts more than 8
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert BitSensitivity.from_dict(result.to_dict()) == result


def _channels() -> SensitivityResult:
    return SensitivityResult(
        kind="channels",
        criterion="l1",
        sparsities=[0.25, 0.5, 0.9],
        baseline=0.9,
        curves={"conv1": [0.9, 0.89, 0.5], "conv2": [0.7, 0.6, 0.2]},
        params={"conv1": 100, "conv2": 1000},
        samples=100,
    )


def _bits() -> BitSensitivity:
    return BitSensitivity(
        bits=[2, 4, 8],
        baseline=0.9,
        curves={"conv1": [0.5, 0.9, 0.9], "fc": [0.9, 0.9, 0.9], "tiny": [0.1, 0.9, 0.9]},
        params={"conv1": 1000, "fc": 10000, "tiny": 10},
    )


def test_sensitivity_sets_the_ranges_and_settles_choices():
    space = build_space(channels=_channels(), sparsity=None, bits=_bits(), range_drop=0.05, finetune_steps=(0, 50))
    assert space.channel_max == {"conv1": 0.5}  # conv2 loses 20 points at 25%: not pruned at all
    assert space.bit_choices["fc"][0] == 2  # flat curve: down to 2 bits
    assert min(space.bit_choices["conv1"]) == 4  # 2 bits costs 40 points
    assert space.bit_choices["tiny"] == [8]  # 0.1% of the weights: settled, not searched
    assert "uniform" in space.level_types and "float" in space.level_types


def test_points_become_recipes_that_round_trip_yaml():
    space = build_space(channels=_channels(), sparsity=None, bits=_bits(), range_drop=0.05, finetune_steps=(0, 50))
    study = optuna.create_study(directions=["maximize", "minimize"])
    for point in space.seeds():
        study.enqueue_trial(point)
    trial = study.ask()
    params = space.suggest(trial)
    assert params["ratio:conv1"] == 0.5 and params["bits:fc"] == 2 and params["steps"] == 50
    recipe = space.recipe(params)
    assert [s.technique for s in recipe.steps] == ["channel_pruning", "finetune", "quantize"]
    assert recipe.steps[2].config.weights.layer_bits["fc"] == 2
    again = Recipe.from_yaml(recipe.to_yaml())
    assert again.to_dict() == recipe.to_dict()
    final = space.recipe({**params, "distill": True}, train={"epochs": 3})
    assert final.steps[1].technique == "distill" and final.steps[1].config.train.epochs == 3
    assert final.steps[1].config.train.max_steps is None


def test_float_levels_use_per_layer_sparsity_and_no_quantize():
    space = build_space(channels=None, sparsity=_channels(), bits=None, range_drop=0.05, finetune_steps=(0,))
    recipe = space.recipe({"levels": "float", "sparsity:conv1": 0.5, "steps": 0})
    assert [s.technique for s in recipe.steps] == ["magnitude_pruning"]
    assert recipe.steps[0].config.per_layer == {"conv1": 0.5}


def test_sparsity_only_where_zeros_save_bytes():
    space = build_space(channels=None, sparsity=_channels(), bits=_bits(), range_drop=0.05, finetune_steps=(0,))
    point = {"sparsity:conv1": 0.5, "steps": 0}
    uniform = [s.technique for s in space.recipe({**point, "levels": "uniform"}).steps]
    coded = [s.technique for s in space.recipe({**point, "levels": "uniform", "entropy_code": True}).steps]
    assert "magnitude_pruning" not in uniform  # packed codes are dense: zeros would only cost accuracy
    assert coded == ["magnitude_pruning", "quantize", "entropy_code"]
    if "binarize" in space.level_types:  # registered by the binary level technique
        binary = [s.technique for s in space.recipe({**point, "levels": "binarize"}).steps]
        assert binary == ["binarize"]


def test_promotion_candidates_meet_the_cost_bounds_smallest_first():
    from torchslim.search.promote import candidates
    from torchslim.search.target import Target

    def record(number, size, drop):
        cost_term = size - 1 / 15
        return {"number": number, "costs": {"size": size}, "drop_points": drop, "constraints": [drop - 1, cost_term]}

    rows = [record(0, 0.02, 1.8), record(1, 0.05, 0.2), record(2, 0.01, 3.5), record(3, 0.2, 0.0), record(4, 0.03, 0.9)]
    rows.append({**record(5, 0.01, 0.0), "stopped_early": "misses the size bound before fine-tuning"})
    picked = [r["number"] for r in candidates(rows, Target(size=15, max_drop=1.0), slack=1.0)]
    assert picked == [0, 4, 1]  # 2: 2.5 points past the budget; 3: not 15x smaller; 5: never fine-tuned


def test_bit_sensitivity_stops_at_its_deadline_and_the_space_keeps_every_choice_for_the_rest():
    import time

    from torchslim.search.space import BIT_CHOICES, layers_with_choices

    model = torch.nn.Sequential(torch.nn.Linear(8, 64), torch.nn.ReLU(), torch.nn.Linear(64, 4))
    x = torch.randn(32, 8, generator=torch.Generator().manual_seed(1))
    reference = model(x).detach()
    calls = []

    def quality(m):
        calls.append(1)
        if len(calls) == 2:  # the deadline passes while the first (largest) layer is measured
            time.sleep(0.05)
        with torch.no_grad():
            return -float((m(x) - reference).pow(2).mean())

    result = bit_sensitivity(model, quality, bits=(2, 8), deadline=time.monotonic() + 0.02)
    assert list(result.curves) == ["0"] == layers_with_choices(result.params, min_share=0.0)[:1]  # largest first
    assert result.unmeasured == ["2"] and set(result.params) == {"0", "2"}
    space = build_space(channels=None, sparsity=None, bits=result, range_drop=1e-9, finetune_steps=(0,))
    assert space.bit_choices["2"] == list(BIT_CHOICES)  # not measured: not settled


def test_layers_with_choices_are_the_largest_holding_a_share():
    from torchslim.search.space import layers_with_choices

    params = {"a": 10, "b": 1000, "c": 500, "d": 5}
    assert layers_with_choices(params, max_layers=2) == ["b", "c"]
    assert layers_with_choices(params, max_layers=8, min_share=0.01) == ["b", "c"]


def test_entropy_coding_is_not_searched_when_it_only_saves_bytes():
    space = build_space(channels=None, sparsity=None, bits=_bits(), range_drop=0.05, finetune_steps=(0, 100))
    space.entropy_code = True
    space.entropy_code_always = True
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(12):
        params = space.suggest(study.ask())
        if params["levels"] != "float":
            assert params["entropy_code"] is True
    assert all(seed["entropy_code"] for seed in space.seeds())


def test_fit_to_a_latency_target_and_a_headless_model_drops_what_cannot_help():
    space = build_space(channels=_channels(), sparsity=None, bits=_bits(), range_drop=0.05, finetune_steps=(0, 100))
    assert any(len(c) > 1 for c in space.bit_choices.values())
    space.fit_to(bounded={"latency"}, metric="cosine")
    assert all(c == [8] for c in space.bit_choices.values())  # fewer bits run on the same int8 kernels
    assert set(space.level_types) == {"uniform", "float"}  # channel ranges exist: float + pruning is a point
    assert space.finetune_steps == [0] and space.qat == [False] and space.distill == [False]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(8):
        params = space.suggest(study.ask())
        # no label-based training for a model whose output the labels do not fit, even for the final point
        recipe = space.recipe(params, train={"epochs": 2})
        assert {s.technique for s in recipe.steps} <= {"channel_pruning", "quantize", "finetune"}
        assert all(s.technique != "finetune" or s.config.train.epochs == 0 for s in recipe.steps)
        assert not params.get("qat")


def test_fit_to_a_size_target_keeps_the_bit_choices():
    space = build_space(channels=None, sparsity=None, bits=_bits(), range_drop=0.05, finetune_steps=(0, 100))
    before = dict(space.bit_choices)
    space.fit_to(bounded={"size", "latency"}, metric="accuracy")
    assert space.bit_choices == before and space.finetune_steps == [0, 100]


def test_fit_to_drops_the_float_level_when_nothing_can_be_pruned():
    space = build_space(channels=None, sparsity=None, bits=_bits(), range_drop=0.05, finetune_steps=(0,))
    space.fit_to(bounded={"latency"}, metric="cosine")
    assert space.level_types == ["uniform"]  # an unpruned float point is the original model


def test_outlier_splitting_is_a_choice_with_a_seed_each_way():
    space = build_space(channels=None, sparsity=None, bits=_bits(), range_drop=0.05, finetune_steps=(0,))
    space.fit_to(bounded={"latency"}, metric="cosine")
    space.outlier_channels = [8, 0]
    seeds = space.seeds()
    assert [s["outliers"] for s in seeds if s["levels"] == "uniform"] == [8, 0]
    configs = [space.recipe(s).steps[-1].config for s in seeds if s["levels"] == "uniform"]
    assert [c.outlier_channels for c in configs] == [8, 0]
