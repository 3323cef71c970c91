"""Recovery fine-tuning of the pruning techniques: one nested ``train:`` section (old flat keys still
read), every run through ``train_in_context`` (the context's device, seed and run directory reach the
loop), plan replays registered in ``core`` and no import of ``torchslim.io`` in graph/ or pruning/."""

from __future__ import annotations

import ast
import copy
import pathlib
import warnings

import pytest
import torch

import torchslim
from torchslim.core import TECHNIQUES, Context, DataSplits, Recipe
from torchslim.core.plans import PLAN_REPLAYS, model_plan, replay_plan
from torchslim.pruning import ChannelPruning, MagnitudePruning, get_mask, prune_channels
from torchslim.train import StaleCheckpointWarning, TrainConfig

X8 = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))
CONFIGS = [ChannelPruning, MagnitudePruning]


def _handler(model, config, context):
    return TECHNIQUES.handler_for(config)(model, config, targets=None, context=context)


@pytest.mark.parametrize("cls", CONFIGS)
def test_default_train_section_trains_nothing_with_the_measured_defaults(cls):
    train = cls().train
    assert train == TrainConfig(epochs=0)
    assert (train.epochs, train.max_steps, train.lr, train.optimizer) == (0, None, 1e-3, "adam")
    assert not {"finetune_epochs", "finetune_max_steps", "lr", "optimizer"} & set(cls.field_names())


@pytest.mark.parametrize("cls", CONFIGS)
def test_old_flat_keys_move_into_train_with_a_warning(cls):
    with pytest.warns(FutureWarning, match="'finetune_epochs' is now 'train.epochs'"):
        config = cls.from_dict({"finetune_epochs": 0})
    assert config == cls()
    with pytest.warns(FutureWarning) as caught:
        config = cls.from_dict({"finetune_epochs": 2, "finetune_max_steps": 7, "lr": 5e-4, "optimizer": "sgd"})
    assert len(caught) == 4
    assert config.train == TrainConfig(epochs=2, max_steps=7, lr=5e-4, optimizer="sgd")


@pytest.mark.parametrize("cls", CONFIGS)
def test_a_partial_train_section_keeps_the_steps_own_defaults(cls):
    # TrainConfig alone defaults to epochs=1; a pruning step's default is not to fine-tune
    assert cls.from_dict({"train": {"lr": 0.01}}).train == TrainConfig(epochs=0, lr=0.01)
    with pytest.warns(FutureWarning, match="'lr' is now 'train.lr'"):
        assert cls.from_dict({"lr": 0.01}).train == TrainConfig(epochs=0, lr=0.01)
    assert cls.from_dict({"train": {"epochs": 3}}).train == TrainConfig(epochs=3)


def test_nested_yaml_round_trips():
    text = """
version: 1
steps:
  - technique: channel_pruning
    targets: {exclude: [classifier]}
    config: {ratio: 0.5, train: {epochs: 2}}
  - technique: magnitude_pruning
    config: {sparsity: 0.9, scope: global, schedule: iterative, train: {epochs: 1, lr: 0.0005, optimizer: sgd}}
"""
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # the new form warns about nothing
        recipe = Recipe.from_yaml(text)
        again = Recipe.from_yaml(recipe.to_yaml())
    channels, sparse = (step.config for step in recipe.steps)
    assert channels == ChannelPruning(ratio=0.5, train=TrainConfig(epochs=2))
    assert sparse.train == TrainConfig(epochs=1, lr=5e-4, optimizer="sgd")
    assert again.to_dict() == recipe.to_dict() and again.steps[1].config == sparse
    assert recipe.to_dict()["steps"][0]["config"]["train"]["epochs"] == 2


@pytest.mark.parametrize(
    "name, epochs", [("prune-channels", 2), ("prune-int8", 2), ("prune-kd-int8", 0), ("prune-sparse", 1)]
)
def test_shipped_recipes_keep_their_fine_tuning(name, epochs):
    from torchslim.recipes import shipped_recipe

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # old flat form until the recipes are rewritten
        step = shipped_recipe(name).steps[0]
    assert step.config.train == TrainConfig(epochs=epochs)


@pytest.fixture
def loop_calls(monkeypatch):
    """Every call of the one training loop (``torchslim.train.loop.train``), with its keyword
    arguments; the spy runs the real loop on the CPU."""
    import torchslim.train.loop as loop
    import torchslim.train.step as step

    calls = []
    real = loop.train

    def spy(model, data, **kwargs):
        calls.append(dict(kwargs))
        return real(model, data, **{**kwargs, "device": "cpu"})

    monkeypatch.setattr(loop, "train", spy)
    if hasattr(step, "train"):  # a step module that binds the loop's function by name
        monkeypatch.setattr(step, "train", spy)
    return calls


def test_context_device_seed_and_run_dir_reach_the_loop(toys, loop_calls, tmp_path):
    loader = toys.make_loader(toys.blobs(64), 32)
    context = Context(data=DataSplits(train=loader), device="cuda:3", seed=11, run_dir=tmp_path, quiet=True)
    config = MagnitudePruning(sparsity=0.5, train=TrainConfig(epochs=1, lr=5e-3))
    out = _handler(toys.seeded(toys.MLP), config, context)
    assert [c["device"] for c in loop_calls] == ["cuda:3"]
    call = loop_calls[0]
    assert call["seed"] == 11 and call["config"].lr == 5e-3 and call["quiet"] is True
    assert call["run_dir"] == tmp_path / "magnitude_pruning"
    assert out.info["rounds"][0]["finetune"]["steps"] == 2

    loop_calls.clear()
    cnn = ChannelPruning(ratio=0.5, schedule="iterative", steps=2, train=TrainConfig(epochs=1))
    images = toys.make_loader(toys.images(32), 16)
    _handler(toys.seeded(toys.CNN), cnn, context.replace(data=DataSplits(train=images), example_input=X8))
    assert [c["device"] for c in loop_calls] == ["cuda:3", "cuda:3"]
    assert [c["run_dir"] for c in loop_calls] == [
        tmp_path / "channel_pruning" / "round1",
        tmp_path / "channel_pruning" / "round2",
    ]


def test_agp_runs_as_a_hook_of_the_loop(toys, loop_calls):
    loader = toys.make_loader(toys.blobs(64), 16)
    config = MagnitudePruning(sparsity=0.5, schedule="agp", train=TrainConfig(epochs=2), frequency=1)
    out = _handler(toys.seeded(toys.MLP), config, Context(data=DataSplits(train=loader), device="cuda:1"))
    assert len(loop_calls) == 1 and loop_calls[0]["device"] == "cuda:1"
    assert [type(h).__name__ for h in loop_calls[0]["hooks"]] == ["AGPHook"]
    assert out.info["sparsity"] == pytest.approx(0.5, abs=2e-3)


def test_iterative_rounds_checkpoint_apart_and_a_rerun_resumes_each(toys, tmp_path):
    loader = toys.make_loader(toys.blobs(64), 32)
    context = Context(data=DataSplits(train=loader), run_dir=tmp_path)
    config = MagnitudePruning(sparsity=0.75, scope="layer", schedule="iterative", steps=2, train=TrainConfig(epochs=1))
    with warnings.catch_warnings():
        warnings.simplefilter("error", StaleCheckpointWarning)
        first = _handler(toys.seeded(toys.MLP), config, context)
        second = _handler(toys.seeded(toys.MLP), config, context)
    assert [r["finetune"]["resumed_from_step"] for r in first.info["rounds"]] == [None, None]
    assert [r["finetune"]["resumed_from_step"] for r in second.info["rounds"]] == [2, 2]
    assert sorted(p.name for p in (tmp_path / "magnitude_pruning").iterdir()) == ["round1", "round2"]
    for name in ("fc1", "fc2"):
        a, b = first.model.get_submodule(name), second.model.get_submodule(name)
        assert torch.equal(get_mask(a), get_mask(b)) and torch.equal(a.weight, b.weight)


def test_plan_replays_are_registered_in_core_and_rebuild_the_pruned_model(toys):
    assert "prune_channels" in PLAN_REPLAYS and "fold_batchnorm" in PLAN_REPLAYS
    from torchslim.graph import fold_batchnorm

    pruned = prune_channels(toys.seeded(toys.ResNet), X8, ratio=0.5).model.eval()
    folded = fold_batchnorm(pruned, X8)
    plan = model_plan(folded)
    assert [entry["kind"] for entry in plan] == ["prune_channels", "fold_batchnorm"]
    rebuilt = replay_plan(toys.seeded(toys.ResNet).eval(), copy.deepcopy(plan), source="test")
    rebuilt.load_state_dict(folded.state_dict())
    assert model_plan(rebuilt) == plan
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(X8), folded(X8), rtol=0, atol=0)


def _torchslim_imports(path: pathlib.Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.level == 0 and node.module.startswith("torchslim"):
                found.add(node.module)
            if node.module == "torchslim" or node.level:
                found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("torchslim"))
    return found


@pytest.mark.parametrize("package", ["graph", "pruning"])
def test_graph_and_pruning_do_not_import_io_nor_touch_the_plan_attribute(package):
    root = pathlib.Path(torchslim.__file__).parent / package
    offenders = []
    for path in sorted(root.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        imports = _torchslim_imports(path)
        if any(name == "torchslim.io" or name.startswith("torchslim.io.") for name in imports):
            offenders.append(f"{path.name} imports torchslim.io")
        if "torchslim_plan" in text:
            offenders.append(f"{path.name} names the plan attribute")
    allowed = {"sensitivity.py imports torchslim.io"}  # atomic file writes: no core alternative yet
    assert set(offenders) <= allowed, offenders
