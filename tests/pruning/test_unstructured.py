"""magnitude_pruning: exact sparsity (global vs layer), masks that survive training, N:M, bad input."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from torchslim.core import TECHNIQUES, Context, DataSplits, Recipe, Step, Targets
from torchslim.core.errors import ConfigError, DataError, TargetError
from torchslim.pruning import (
    MagnitudePruner,
    MagnitudePruning,
    apply_mask,
    get_mask,
    magnitude_prune,
    mask_sparsity,
    nm_mask,
    remove_masks,
)
from torchslim.train import TrainConfig


def _zeros(t: torch.Tensor) -> int:
    return int((t == 0).sum())


def _handler(model, config, targets=None, context=None):
    return TECHNIQUES.handler_for(config)(model, config, targets=targets, context=context or Context())


def test_layer_scope_prunes_each_layer_to_exactly_the_sparsity(toys):
    model = toys.seeded(toys.MLP)
    out = magnitude_prune(model, sparsity=0.6, scope="layer")
    for name in ("fc1", "fc2", "classifier"):
        w = getattr(model, name).weight
        assert _zeros(w) == round(0.6 * w.numel()), name
    assert {row["layer"] for row in out.layers} == {"fc1", "fc2", "classifier"}
    assert all(abs(row["sparsity"] - 0.6) < 0.01 for row in out.layers)


def test_global_scope_hits_the_total_exactly_with_one_threshold(toys):
    model = toys.seeded(toys.MLP)
    with torch.no_grad():
        model.fc2.weight.mul_(3.0)  # fc2 and classifier weights are large: global ranking spares them
        model.classifier.weight.mul_(3.0)
    out = magnitude_prune(model, sparsity=0.5, scope="global")
    weights = [model.fc1.weight, model.fc2.weight, model.classifier.weight]
    total = sum(w.numel() for w in weights)
    assert sum(_zeros(w) for w in weights) == round(0.5 * total)
    per = {row["layer"]: row["sparsity"] for row in out.layers}
    assert per["fc2"] < 0.5 < per["fc1"]
    kept_min = min(w[w != 0].abs().min() for w in weights)
    pruned_max = max(
        toys_dense(m).abs()[get_mask(m) == 0].max()
        for m in (model.fc1, model.fc2, model.classifier)
        if (get_mask(m) == 0).any()
    )
    assert pruned_max <= kept_min  # one global threshold
    assert out.info["sparsity"] == pytest.approx(0.5, abs=1 / total)


def test_global_pruning_that_would_empty_a_layer_is_an_error(toys):
    from torchslim.core.errors import ModelError

    model = toys.seeded(toys.MLP)
    with torch.no_grad():
        model.fc2.weight.mul_(10.0)
    before = copy.deepcopy(model)
    with pytest.raises(ModelError, match="every weight of layer 'fc1'"):
        _handler(model, MagnitudePruning(sparsity=0.5, scope="global"))
    assert toys.state_equal(model, before)


def toys_dense(module):
    from torchslim.pruning import dense_weight

    return dense_weight(module)


def test_masks_survive_optimizer_steps_with_weight_decay(toys):
    model = toys.seeded(toys.MLP)
    magnitude_prune(model, sparsity=0.7, scope="layer")
    masks = {n: get_mask(m).clone() for n, m in model.named_modules() if get_mask(m) is not None}
    for opt in (
        torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9, weight_decay=0.1),
        torch.optim.Adam(model.parameters(), lr=0.1, weight_decay=0.1),
    ):
        for _ in range(3):
            loss = model(torch.randn(8, 16)).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    for name, mask in masks.items():
        w = model.get_submodule(name).weight
        assert torch.all(w[~mask] == 0), name
        assert torch.equal(get_mask(model.get_submodule(name)), mask)


def test_one_shot_with_finetuning_keeps_masks_and_learns(toys):
    data = toys.blobs(256)
    loader = toys.make_loader(data, 32, shuffle=True)
    model = toys.seeded(toys.MLP)
    config = MagnitudePruning(sparsity=0.7, train=TrainConfig(epochs=6, lr=2e-2))
    out = _handler(model, config, context=Context(data=DataSplits(train=loader)))
    pruned = out.model
    assert pruned is not model and get_mask(model.fc1) is None, "the caller's model is untouched"
    assert out.info["sparsity"] == pytest.approx(0.7, abs=1e-3)
    assert mask_sparsity(pruned)["(total)"] == pytest.approx(0.7, abs=1e-3)
    assert all(_zeros(getattr(pruned, n).weight) >= 1 for n in ("fc1", "fc2", "classifier"))
    x, y = data.tensors
    with torch.no_grad():
        acc = (pruned(x).argmax(1) == y).float().mean().item()
    assert acc > 0.75  # learnt despite 70% sparsity (chance is 0.25)
    assert pruned.fc1.sparse_kernel is False
    assert out.info["rounds"][0]["finetune"]["steps"] == 6 * 8


def test_iterative_schedule_reaches_the_target_through_compounding_rounds(toys):
    loader = toys.make_loader(toys.blobs(64), 32)
    config = MagnitudePruning(sparsity=0.875, scope="layer", schedule="iterative", steps=3, train=TrainConfig(epochs=1))
    out = _handler(toys.seeded(toys.MLP), config, context=Context(data=DataSplits(train=loader)))
    targets = [r["sparsity"] for r in out.info["rounds"]]
    assert targets == pytest.approx([0.5, 0.75, 0.875])
    assert out.info["sparsity"] == pytest.approx(0.875, abs=2e-3)


def test_masks_only_shrink_in_later_rounds(toys):
    model = toys.seeded(toys.MLP)
    pruner = MagnitudePruner([("fc1", model.fc1)], scope="layer", criterion="random", seed=1)
    pruner.prune_to(0.5)
    first = get_mask(model.fc1).clone()
    pruner.prune_to(0.7)
    second = get_mask(model.fc1)
    assert torch.all(second <= first)
    assert _zeros(model.fc1.weight) == round(0.7 * model.fc1.weight.numel())


def test_random_criterion_is_seeded_and_differs_from_magnitude(toys):
    a = magnitude_prune(toys.seeded(toys.MLP), sparsity=0.5, criterion="random", seed=3).model
    b = magnitude_prune(toys.seeded(toys.MLP), sparsity=0.5, criterion="random", seed=3).model
    c = magnitude_prune(toys.seeded(toys.MLP), sparsity=0.5, criterion="l1").model
    assert torch.equal(get_mask(a.fc1), get_mask(b.fc1))
    assert not torch.equal(get_mask(a.fc1), get_mask(c.fc1))
    l2 = magnitude_prune(toys.seeded(toys.MLP), sparsity=0.5, criterion="l2").model
    assert torch.equal(get_mask(l2.fc1), get_mask(c.fc1))  # |w| and w^2 rank single weights alike


def test_per_layer_overrides_apply_and_unknown_keys_fail(toys):
    model = toys.seeded(toys.MLP)
    magnitude_prune(model, sparsity=0.5, scope="layer", per_layer={"classifier": 0.0, "re:fc[12]": 0.9})
    assert _zeros(model.classifier.weight) == 0
    assert _zeros(model.fc2.weight) == round(0.9 * model.fc2.weight.numel())
    with pytest.raises(TargetError, match="per_layer.*'fc9'"):
        magnitude_prune(toys.seeded(toys.MLP), sparsity=0.5, per_layer={"fc9": 0.5})


@pytest.mark.parametrize("model_name", ["MLP", "CNN"])
def test_two_four_pattern_is_exact(toys, model_name):
    model = toys.seeded(getattr(toys, model_name))
    types = ["Linear", "Conv2d"] if model_name == "CNN" else ["Linear"]
    out = magnitude_prune(model, pattern="2:4", targets=Targets(types=types))
    checked = 0
    for row in out.layers:
        module = model.get_submodule(row["layer"])
        w = module.weight.detach()
        if w.dim() == 4:
            w = w.permute(0, 2, 3, 1)
        groups = (w.reshape(-1, 4) != 0).sum(1)
        assert torch.all(groups <= 2) and torch.all(groups == 2), row["layer"]
        checked += 1
    assert checked >= 2
    if model_name == "CNN":  # conv1 has 1 input channel: not a multiple of 4
        assert "conv1" in out.skipped and "multiple of M=4" in out.skipped["conv1"]
        with pytest.raises(TargetError, match="strict.*conv1"):
            magnitude_prune(toys.seeded(toys.CNN), pattern="2:4", targets=Targets(types=["Conv2d"]), strict=True)


def test_nm_mask_keeps_the_largest_in_each_group():
    lin = nn.Linear(8, 1)
    scores = torch.tensor([[1.0, 5.0, 3.0, 2.0, 0.1, 0.2, 0.4, 0.3]])
    mask = nm_mask(scores, lin, 2, 4)
    assert mask.tolist() == [[False, True, True, False, False, False, True, True]]


def test_explicitly_targeted_unprunable_layers_are_skipped_with_a_reason(toys):
    model = toys.seeded(toys.CNN)
    out = magnitude_prune(model, sparsity=0.5, targets=Targets(names=["conv2", "bn2"]))
    assert [r["layer"] for r in out.layers] == ["conv2"]
    assert "1-D weight" in out.skipped["bn2"]
    with pytest.raises(TargetError, match="strict.*bn2"):
        magnitude_prune(toys.seeded(toys.CNN), sparsity=0.5, targets=Targets(names=["conv2", "bn2"]), strict=True)


def test_bad_input_fails_clearly_and_leaves_the_model_unchanged(toys):
    model = toys.seeded(toys.MLP)
    before = copy.deepcopy(model)
    with pytest.raises(ConfigError, match="sparsity=1.0 is out of range"):
        MagnitudePruning(sparsity=1.0)
    with pytest.raises(ConfigError, match="sparsity=-0.1"):
        MagnitudePruning(sparsity=-0.1)
    with pytest.raises(ConfigError, match="Did you mean 'sparsity'"):
        MagnitudePruning.from_dict({"sparsty": 0.5})
    with pytest.raises(ConfigError, match="0 < N < M"):
        MagnitudePruning(pattern="4:2")
    with pytest.raises(ConfigError, match="contradicts"):
        MagnitudePruning(pattern="2:4", sparsity=0.75)
    with pytest.raises(ConfigError, match="agp"):
        MagnitudePruning(schedule="agp")
    with pytest.raises(TargetError, match="'fc3'"):
        _handler(model, MagnitudePruning(sparsity=0.5), targets=Targets(names=["fc3"]))
    with pytest.raises(TargetError, match="no layer"):
        _handler(model, MagnitudePruning(sparsity=0.5), targets=Targets(types=["ReLU"]))
    with pytest.raises(DataError, match="train data"):
        _handler(model, MagnitudePruning(sparsity=0.5, train=TrainConfig(epochs=1)))
    assert toys.state_equal(model, before) and get_mask(model.fc1) is None


def test_recipe_yaml_round_trip():
    recipe = Recipe(
        [
            Step(
                MagnitudePruning(
                    sparsity=0.9, scope="layer", schedule="agp", train=TrainConfig(epochs=2), end_step=100
                ),
                targets=Targets(exclude=["classifier"]),
            )
        ]
    )
    again = Recipe.from_yaml(recipe.to_yaml())
    assert again.to_dict() == recipe.to_dict()
    assert again.steps[0].config == recipe.steps[0].config


def test_artifact_stores_sparse_weights_and_loads_the_same_outputs(toys, tmp_path):
    from torchslim.io import load, save
    from torchslim.measure.size import directory_bytes

    dense = toys.seeded(lambda: toys.MLP(d_in=64, hidden=128))
    sparse = magnitude_prune(copy.deepcopy(dense), sparsity=0.9).model
    d_bytes = directory_bytes(save(dense, tmp_path / "dense"))
    s_bytes = directory_bytes(save(sparse, tmp_path / "sparse"))
    assert s_bytes < 0.35 * d_bytes
    loaded = load(tmp_path / "sparse", model=toys.seeded(lambda: toys.MLP(d_in=64, hidden=128)))
    x = torch.randn(4, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), sparse.eval()(x))


def test_remove_masks_bakes_zeros(toys):
    model = toys.seeded(toys.MLP)
    magnitude_prune(model, sparsity=0.5)
    zeros = _zeros(model.fc1.weight)
    remove_masks(model)
    assert get_mask(model.fc1) is None and isinstance(model.fc1.weight, nn.Parameter)
    assert _zeros(model.fc1.weight) == zeros


def test_apply_mask_rejects_a_wrong_shape(toys):
    from torchslim.core.errors import ModelError

    with pytest.raises(ModelError, match="does not fit"):
        apply_mask(nn.Linear(4, 4), torch.ones(3, 4, dtype=torch.bool))


def test_removing_masks_on_a_copy_leaves_the_original_working(toys):
    model = magnitude_prune(toys.seeded(toys.MLP), sparsity=0.5).model
    copy_ = copy.deepcopy(model)
    remove_masks(copy_)
    x = torch.randn(3, 16)
    with torch.no_grad():
        torch.testing.assert_close(model(x), copy_(x))
    assert get_mask(model.fc1) is not None and type(copy_.fc1) is nn.Linear
