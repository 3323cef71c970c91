import pytest
import torch
from torch import nn

from torchslim.core import ConfigError, TargetError, Targets


def model():
    return nn.Sequential(
        nn.Conv2d(1, 4, 3),
        nn.ReLU(),
        nn.Sequential(nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4)),
        nn.Flatten(),
        nn.Linear(4, 2),
    )


def names(pairs):
    return [n for n, _ in pairs]


def test_default_selects_modules_with_own_params():
    assert names(Targets().resolve(model())) == ["0", "2.0", "2.1", "4"]


def test_types_match_along_mro():
    class MyConv(nn.Conv2d):
        pass

    m = nn.Sequential(MyConv(1, 1, 1), nn.Conv2d(1, 1, 1))
    assert names(Targets(types=["Conv2d"]).resolve(m)) == ["0", "1"]


def test_names_regex_and_exclude():
    m = model()
    assert names(Targets(names=["re:2\\..*"]).resolve(m)) == ["2.0", "2.1"]
    assert names(Targets(names=["2"], exclude=["BatchNorm2d"]).resolve(m)) == ["2", "2.0"]
    assert names(Targets(types=["Conv2d", "Linear"], exclude=["4"]).resolve(m)) == ["0", "2.0"]


def test_pattern_matching_nothing_is_an_error():
    with pytest.raises(TargetError, match="'Conv3d' matches no module.*Did you mean 'Conv2d'"):
        Targets(types=["Conv3d"]).resolve(model())
    with pytest.raises(TargetError, match="'classifier' matches no module"):
        Targets(exclude=["classifier"]).resolve(model())
    with pytest.raises(TargetError):
        Targets(names=["re:head.*"]).resolve(model())


def test_bad_regex_and_keys():
    with pytest.raises(ConfigError, match="bad regex"):
        Targets(names=["re:("])
    with pytest.raises(ConfigError, match="Did you mean 'types'"):
        Targets.from_dict({"type": ["Linear"]})


def test_candidates_restrict():
    assert names(Targets().resolve(model(), candidates={"4"})) == ["4"]


# -- roles: role:head --------------------------------------------------------------------------


class _Net(nn.Module):
    """A head with a non-standard name after pooling, dropout and a reshape."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(0.1)
        self.out_proj = nn.Linear(4, 3)
        self.unused = nn.Linear(3, 3)  # registered last, never called

    def forward(self, x):
        return self.out_proj(self.drop(self.pool(self.body(x)).flatten(1)))


class _Untraceable(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(4, 2)

    def forward(self, x):
        if x.sum() > 0:  # data-dependent control flow: torch.fx cannot trace this
            return self.b(self.a(x))
        return self.b(x)


def test_find_head_follows_the_data_flow_not_the_registration_order():
    from torchslim.core.targets import find_head

    assert find_head(_Net()) == ["out_proj"]
    assert find_head(model()) == ["4"]
    # a residual sum: both branches end in a Linear, both are the head
    two = nn.ModuleDict({"a": nn.Linear(2, 2), "b": nn.Linear(2, 2)})

    class Sum(nn.Module):
        def __init__(self):
            super().__init__()
            self.branches = two

        def forward(self, x):
            return self.branches["a"](x) + torch.relu(self.branches["b"](x))

    assert sorted(find_head(Sum())) == ["branches.a", "branches.b"]


def test_find_head_inside_a_container_and_untraceable_fallback():
    from torchslim.core.targets import find_head

    wrapped = nn.Sequential(nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)), nn.Softmax(-1))
    assert find_head(wrapped) == ["0.2"]
    # fx cannot trace it: the last Linear registered inside is taken
    assert find_head(nn.Sequential(_Untraceable(), nn.ReLU())) == ["0.b"]


def test_declared_head_wins_and_is_checked():
    from torchslim.core.targets import HEAD_ATTR, find_head

    m = _Net()
    setattr(m, HEAD_ATTR, "unused")
    assert find_head(m) == ["unused"]
    setattr(m, HEAD_ATTR, ["out_prj"])
    with pytest.raises(TargetError, match="not modules.*Did you mean 'out_proj'"):
        find_head(m)


def test_role_head_in_exclude_and_names():
    m = _Net()
    assert names(Targets(types=["Linear"], exclude=["role:head"]).resolve(m)) == ["unused"]
    assert names(Targets(names=["role:head"]).resolve(m)) == ["out_proj"]
    assert Targets.from_dict({"exclude": ["role:head"]}).to_dict() == {"exclude": ["role:head"]}


def test_role_errors():
    with pytest.raises(ConfigError, match="unknown role 'role:haed'.*Did you mean 'head'"):
        Targets(exclude=["role:haed"])
    with pytest.raises(ConfigError, match="is a role"):
        Targets(types=["role:head"])
    with pytest.raises(TargetError, match="found no Linear or Conv layer"):
        Targets(exclude=["role:head"]).resolve(nn.Sequential(nn.ReLU(), nn.BatchNorm1d(3)))


def test_a_name_that_misses_the_head_suggests_the_role():
    with pytest.raises(TargetError, match=r"'classifier' matches no module.*head.*\['out_proj'\].*'role:head'"):
        Targets(exclude=["classifier"]).resolve(_Net())
    with pytest.raises(TargetError, match="Did you mean 'out_proj'"):
        Targets(exclude=["out_prj"]).resolve(_Net())


@pytest.mark.parametrize("name", ["fmnist-cnn", "lenet5", "efficientnet-lite0"])
def test_heads_of_built_in_models(name):
    from torchslim.core.targets import find_head
    from torchslim.models import build_model
    from torchslim.models.zoo import model_info

    assert find_head(build_model(name, pretrained=False, seed=0)) == [model_info(name).head]


def _run_prune_recipe(name, **kwargs):
    import dataclasses

    from torchslim.api import run_recipe
    from torchslim.core.context import Context
    from torchslim.core.targets import find_head
    from torchslim.models import build_model
    from torchslim.models.zoo import example_input
    from torchslim.recipes import shipped_recipe

    m = build_model(name, seed=0, **kwargs)
    heads = find_head(m)
    shapes = {h: m.get_submodule(h).weight.shape for h in heads}
    recipe = shipped_recipe("prune-channels")
    step = recipe.steps[0]
    assert step.targets == Targets(exclude=["role:head"])
    config = dataclasses.replace(step.config, train=dataclasses.replace(step.config.train, epochs=0))
    recipe = type(recipe)(steps=[dataclasses.replace(step, config=config)])
    x = example_input(name, batch_size=2)
    out, _ = run_recipe(m, recipe, context=Context(example_input=x))
    before = sum(p.numel() for p in m.parameters())
    after = sum(p.numel() for p in out.parameters())
    return heads, shapes, {h: out.get_submodule(h).weight.shape for h in heads}, before, after


@pytest.mark.parametrize("name", ["fmnist-cnn", "lenet5"])
def test_shipped_prune_recipe_keeps_the_head_outputs(name):
    heads, before, after, n0, n1 = _run_prune_recipe(name)
    assert heads == ["classifier"]
    assert after["classifier"][0] == before["classifier"][0] == 10  # the outputs stay
    assert after["classifier"][1] == before["classifier"][1] // 2  # its inputs were pruned
    assert n1 < 0.3 * n0


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, kwargs, head", [("efficientnet-lite0", {}, "_fc"), ("minilm-l6", {"num_classes": 3}, "classifier")]
)
def test_shipped_prune_recipe_on_pretrained_models(name, kwargs, head):
    heads, before, after, n0, n1 = _run_prune_recipe(name, **kwargs)
    assert heads == [head]
    assert after[head][0] == before[head][0]
    assert n1 < 0.9 * n0


@pytest.mark.slow
def test_shipped_prune_recipe_on_the_minilm_encoder():
    # the encoder's forward cannot be traced inside BertModel: the fallback names its pooler,
    # which mean pooling does not use; the embedding width stays 384
    heads, before, after, n0, n1 = _run_prune_recipe("minilm-l6")
    assert heads == ["transformer.pooler.dense"] and after == before
    assert n1 < 0.9 * n0
