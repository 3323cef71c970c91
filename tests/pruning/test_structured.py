"""channel_pruning: physical cuts on coupled groups, importance criteria, scopes, round_to, heads,
plan replay through artifacts, and bad input that leaves the model unchanged."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from torchslim.core import TECHNIQUES, Context, DataSplits, Recipe, Step, Targets
from torchslim.core.errors import ConfigError, DataError, ModelError, TargetError
from torchslim.core.plans import model_plan
from torchslim.pruning import ChannelPruning, MagnitudePruning, magnitude_prune, prune_channels, round_keep
from torchslim.train import TrainConfig

X8 = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _macs(model: nn.Module, x) -> int:
    from torchslim.measure.macs import count_macs

    return count_macs(model, x).total


def _handler(model, config, targets=None, context=None):
    return TECHNIQUES.handler_for(config)(model, config, targets=targets, context=context or Context(example_input=X8))


def test_residual_cnn_gets_fewer_params_and_macs_and_keeps_its_output_shape(toys):
    model = toys.seeded(toys.ResNet).eval()
    out = _handler(model, ChannelPruning(ratio=0.5))
    pruned = out.model
    assert pruned is not model and model.stem.out_channels == 16, "the caller's model is untouched"
    assert pruned.stem.out_channels == 8 and pruned.block1.conv1.out_channels == 8 and pruned.head.out_channels == 16
    assert pruned.block1.conv2.out_channels == pruned.stem.out_channels  # residual coupling kept
    assert pruned(X8).shape == model(X8).shape == (2, 4)
    assert _params(pruned) < 0.4 * _params(model)
    assert _macs(pruned, X8) < 0.4 * _macs(model, X8)
    assert out.info["params_after"] == _params(pruned)
    assert "classifier" in out.info["untouched"] and not out.skipped
    kinds = {row["layer"]: (row["before"], row["after"]) for row in out.layers}
    assert kinds["stem"] == (16, 8)


def test_global_scope_ranks_all_groups_together_on_normalised_scores(toys):
    model = toys.seeded(toys.ResNet)
    out = prune_channels(model, X8, ratio=0.5, scope="global", max_layer_ratio=0.9)
    before = sum(r["before"] for r in out.layers)
    after = sum(r["after"] for r in out.layers)
    assert after == before // 2  # one ranking hits the overall ratio exactly
    fractions = {r["layer"]: r["after"] / r["before"] for r in out.layers}
    assert len(set(fractions.values())) > 1  # ... with different ratios per group
    capped = prune_channels(model, X8, ratio=0.8, scope="global", max_layer_ratio=0.5)
    assert all(r["after"] >= r["before"] / 2 for r in capped.layers)
    assert capped.model(X8).shape == (2, 4)


def test_round_to_keeps_multiples(toys):
    out = prune_channels(toys.seeded(toys.ResNet), X8, ratio=0.4, round_to=4)
    for row in out.layers:
        assert row["after"] % 4 == 0, row
    assert round_keep(9, 16, 4) == 8 and round_keep(1, 16, 8) == 8 and round_keep(5, 4, 8) == 4
    assert round_keep(7, 16, None) == 7


def test_per_layer_ratios_override_the_default(toys):
    out = prune_channels(toys.seeded(toys.ResNet), X8, ratio=0.5, per_layer={"head": 0.25, "re:block1\\.conv1": 0.0})
    rows = {r["layer"]: (r["before"], r["after"]) for r in out.layers}
    assert rows["head"] == (32, 24)
    assert "block1.conv1" not in rows  # ratio 0: nothing removed
    assert rows["stem"] == (16, 8)
    with pytest.raises(TargetError, match="per_layer key 'heda'.*Did you mean 'head'"):
        prune_channels(toys.seeded(toys.ResNet), X8, per_layer={"heda": 0.5})


@pytest.mark.parametrize("importance", ["l1", "l2", "random"])
def test_magnitude_importances_remove_the_weakest_channels(toys, importance):
    model = toys.seeded(toys.CNN).eval()
    with torch.no_grad():
        model.conv2.weight[:8].mul_(0.01)  # channels 0..7 of conv2 are nearly dead
        model.conv2.bias[:8].zero_()
    out = prune_channels(model, X8, ratio=0.5, importance=importance, targets=Targets(names=["conv2"]))
    kept = out.model.conv2.weight
    if importance == "random":
        assert kept.shape[0] == 8
    else:
        torch.testing.assert_close(kept, model.conv2.weight[8:])


def test_bn_scale_uses_gammas_and_skips_groups_without_batchnorm(toys):
    model = toys.seeded(toys.CNN).eval()
    with torch.no_grad():
        model.bn2.weight.copy_(torch.arange(16, dtype=torch.float32))
    out = prune_channels(model, X8, ratio=0.25, importance="bn_scale")
    assert out.model.bn2.weight.tolist() == [float(v) for v in range(4, 16)]
    mlp = toys.seeded(toys.MLP)
    res = prune_channels(mlp, torch.randn(2, 16), ratio=0.5, importance="bn_scale", targets=Targets(names=["fc1"]))
    assert "fc1" in res.skipped and "BatchNorm" in res.skipped["fc1"]
    assert res.model.fc1.out_features == 32


def test_taylor_importance_needs_data_and_uses_gradients(toys):
    model = toys.seeded(toys.CNN)
    with pytest.raises(DataError, match="taylor"):
        _handler(model, ChannelPruning(importance="taylor"))
    loader = toys.make_loader(toys.images(64), 16)
    out = _handler(
        model,
        ChannelPruning(ratio=0.5, importance="taylor", calibration_batches=2),
        context=Context(data=DataSplits(calibration=loader), example_input=X8),
    )
    assert out.model.conv2.out_channels == 8
    assert all(p.grad is None for p in out.model.parameters())


def test_iterative_schedule_with_finetuning(toys):
    loader = toys.make_loader(toys.images(64), 16)
    config = ChannelPruning(ratio=0.5, schedule="iterative", steps=2, train=TrainConfig(epochs=1))
    out = _handler(toys.seeded(toys.CNN), config, context=Context(data=DataSplits(train=loader), example_input=X8))
    rounds = out.info["rounds"]
    assert [r["fraction"] for r in rounds] == [0.5, 1.0]
    assert rounds[0]["params"] > rounds[1]["params"] and rounds[1]["finetune"]["steps"] == 4
    assert out.model.conv2.out_channels == 8 and out.model.conv1.out_channels == 4


def test_concat_and_grouped_models_prune_and_run(toys):
    for factory in (toys.ConcatNet, toys.GroupedNet):
        model = toys.seeded(factory).eval()
        out = prune_channels(model, X8, ratio=0.5)
        assert out.model(X8).shape == model(X8).shape
        assert _params(out.model) < _params(model)
    grouped = prune_channels(toys.seeded(toys.GroupedNet), X8, ratio=0.5).model
    assert grouped.grouped.groups == 4 and grouped.grouped.out_channels % 4 == 0


def test_attention_loses_whole_heads_and_ffn_neurons(toys):
    pytest.importorskip("transformers")
    model = toys.tiny_bert(num_heads=4, hidden=32, ffn=64).eval()
    x = toys.bert_input()
    out = prune_channels(model, x, ratio=0.5, head_ratio=0.5)
    pruned = out.model
    layer = pruned.bert.encoder.layer[0]
    assert layer.attention.self.num_attention_heads == 2 and layer.attention.self.query.out_features == 16
    assert layer.attention.output.dense.in_features == 16
    assert layer.intermediate.dense.out_features == 32 and layer.output.dense.in_features == 32
    assert pruned.bert.embeddings.word_embeddings.embedding_dim == 32  # hidden size kept
    with torch.no_grad():
        assert pruned(**x).shape == (2, 3)
    kinds = sorted({r["kind"] for r in out.layers})
    assert kinds == ["ffn", "heads"]
    hidden_reasons = [r for r in out.info["untouched"].values() if "hidden size" in r]
    assert hidden_reasons
    only_ffn = prune_channels(model, x, ratio=0.5, ffn_ratio=0.25).model
    assert only_ffn.bert.encoder.layer[0].attention.self.num_attention_heads == 4
    assert only_ffn.bert.encoder.layer[0].intermediate.dense.out_features == 48


def test_bad_input_fails_clearly_and_leaves_the_model_unchanged(toys):
    model = toys.seeded(toys.ResNet)
    before = copy.deepcopy(model)
    with pytest.raises(ConfigError, match="ratio=1.0 is out of range"):
        ChannelPruning(ratio=1.0)
    with pytest.raises(ConfigError, match="ratio=-0.5"):
        ChannelPruning(ratio=-0.5)
    with pytest.raises(ConfigError, match="Did you mean 'importance'"):
        ChannelPruning.from_dict({"importanse": "l1"})
    with pytest.raises(TargetError, match="'blok1'"):
        _handler(model, ChannelPruning(), targets=Targets(names=["blok1"]))
    with pytest.raises(ModelError, match="every channel of layer 'block1.conv1'"):
        _handler(model, ChannelPruning(ratio=0.5, per_layer={"block1.conv1": 0.95}))
    with pytest.raises(ModelError, match="cannot be traced"):
        _handler(toys.seeded(toys.Detached), ChannelPruning(), context=Context(example_input=torch.randn(2, 4)))
    with pytest.raises(ModelError, match="example input"):
        _handler(toys.seeded(toys.Detached), ChannelPruning(), context=Context())
    assert toys.state_equal(model, before) and not hasattr(model, "torchslim_plan")


def test_excluding_a_coupled_layer_skips_the_group_and_strict_raises(toys):
    model = toys.seeded(toys.ResNet)
    out = _handler(model, ChannelPruning(ratio=0.5), targets=Targets(exclude=["block1.conv2"]))
    assert out.model.stem.out_channels == 16  # the residual group is left whole
    assert "stem" in out.skipped and "block1.conv2" in out.skipped["stem"]
    assert out.model.block1.conv1.out_channels == 8
    with pytest.raises(TargetError, match="strict.*block1.conv2"):
        _handler(model, ChannelPruning(ratio=0.5, strict=True), targets=Targets(exclude=["block1.conv2"]))


def test_masked_models_are_refused_and_recipe_order_is_checked(toys):
    masked = magnitude_prune(toys.seeded(toys.CNN), sparsity=0.5).model
    with pytest.raises(ModelError, match="parametrizations"):
        _handler(masked, ChannelPruning())
    with pytest.raises(ConfigError, match="cannot come after 'magnitude_pruning'"):
        Recipe([Step(MagnitudePruning(sparsity=0.5)), Step(ChannelPruning())])
    recipe = Recipe(
        [
            Step(ChannelPruning(ratio=0.3, importance="bn_scale", round_to=8, head_ratio=0.25)),
            Step(MagnitudePruning(pattern="2:4")),
        ]
    )
    assert Recipe.from_yaml(recipe.to_yaml()).to_dict() == recipe.to_dict()


def test_plan_replay_rebuilds_a_user_model_through_the_artifact(toys, tmp_path):
    from torchslim.io import load, save

    pruned = prune_channels(toys.seeded(toys.ResNet), X8, ratio=0.5, scope="global").model.eval()
    entry = model_plan(pruned)[-1]
    assert entry["kind"] == "prune_channels" and entry["ops"]
    save(pruned, tmp_path / "art")
    loaded = load(tmp_path / "art", model=toys.seeded(toys.ResNet))
    assert loaded.stem.out_channels == pruned.stem.out_channels
    torch.testing.assert_close(loaded(X8), pruned(X8), rtol=0, atol=0)


def test_builtin_resnet_round_trips_through_save_and_load(tmp_path):
    from torchslim.io import load, save
    from torchslim.models import build_model, example_input

    model = build_model("fmnist-resnet", seed=0)
    x = example_input(model, batch_size=3)
    out = _handler(model, ChannelPruning(ratio=0.5, round_to=4), context=Context(example_input=x))
    pruned = out.model.eval()
    assert _macs(pruned, x) <= 0.5 * _macs(model, x)
    save(pruned, tmp_path / "resnet")
    loaded = load(tmp_path / "resnet")  # architecture from the built-in spec + the plan
    assert _params(loaded) == _params(pruned)
    with torch.no_grad():
        assert torch.equal(loaded(x), pruned(x))


@pytest.mark.slow
def test_builtin_efficientnet_keeps_working_at_30_percent(tmp_path):
    from torchslim.io import load, save
    from torchslim.models import build_model, example_input

    model = build_model("efficientnet-lite0", pretrained=False, seed=0)
    x = example_input(model)
    out = prune_channels(model, x, ratio=0.3)
    assert 2.4e6 < out.info["params_after"] < 2.8e6
    save(out.model, tmp_path / "eff")
    with torch.no_grad():
        assert torch.equal(load(tmp_path / "eff")(x), out.model.eval()(x))


@pytest.mark.slow
def test_builtin_minilm_loses_4_of_12_heads_and_half_its_ffn(tmp_path):
    from torchslim.io import load, save
    from torchslim.models import build_model, example_input

    model = build_model("minilm-l6", pretrained=False, seed=0)
    x = example_input(model, batch_size=2)
    out = prune_channels(model, x, ratio=0.5, head_ratio=1 / 3)
    for layer in out.model.transformer.encoder.layer:
        assert layer.attention.self.num_attention_heads == 8 and layer.intermediate.dense.out_features == 768
    save(out.model, tmp_path / "minilm")
    with torch.no_grad():
        assert torch.allclose(load(tmp_path / "minilm")(**x), out.model.eval()(**x), atol=1e-6)
