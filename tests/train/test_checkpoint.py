"""Checkpoints: resume after an interruption equals an uninterrupted run; files are safetensors/JSON."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

from torchslim.core.errors import ArtifactError
from torchslim.train import StaleCheckpointWarning, TrainConfig, TrainHook, train
from torchslim.train.checkpoint import from_json, to_json


class Killed(RuntimeError):
    pass


class Crash(TrainHook):
    """Simulates a killed process: raises after step `at` (after that step's checkpoint, if any)."""

    def __init__(self, at=None):
        self.at = at

    def on_step_end(self, state):
        if self.at is not None and state.step == self.at:
            raise Killed(state.step)


class Tracker(TrainHook):
    """A stateful hook: its counters must survive checkpoint/resume exactly."""

    def __init__(self):
        self.steps = 0
        self.epochs = 0
        self.total = torch.zeros(())
        self.starts = 0
        self.ends = 0
        self.resumed_from = "unset"

    def on_train_start(self, state):
        self.starts += 1
        self.resumed_from = state.resumed_from_step

    def on_step_end(self, state):
        self.steps += 1
        self.total = self.total + state.model[0].weight.detach().sum()

    def on_epoch_end(self, state):
        self.epochs += 1

    def on_train_end(self, state):
        self.ends += 1

    def state_dict(self):
        return {"steps": self.steps, "epochs": self.epochs, "total": self.total, "pair": (1, 2.5)}

    def load_state_dict(self, state):
        assert state["pair"] == (1, 2.5)
        self.steps, self.epochs, self.total = state["steps"], state["epochs"], state["total"]


CONFIG = dict(epochs=3, lr=1e-2, schedule="cosine", warmup_steps=2, grad_clip=1.0, log_every=4)


def _loader(toys, own_generator=False):
    # 6 batches per epoch, 18 steps in all; shuffled by the global RNG or by the loader's generator
    generator = torch.Generator() if own_generator else None
    return torch.utils.data.DataLoader(toys.dataset(n=192), batch_size=32, shuffle=True, generator=generator)


@pytest.mark.parametrize(
    ("optimizer", "crash_at", "last_checkpoint", "own_generator"),
    [
        ("adam", 5, 3, False),  # mid-epoch checkpoint, mid-epoch kill
        # the checkpoint due at step 6 (end of epoch 0) is written after on_epoch_end, so a kill in
        # step 6's on_step_end falls back to step 3, and one at step 7 resumes at the epoch start
        ("adam", 6, 3, False),
        ("adam", 7, 6, False),
        ("sgd", 11, 9, True),  # SGD momentum buffers; the loader's own generator is reseeded
        ("adamw", 2, None, False),  # killed before the first checkpoint: starts afresh
    ],
)
def test_a_killed_and_resumed_run_ends_with_the_same_weights(
    toys, tmp_path, optimizer, crash_at, last_checkpoint, own_generator
):
    config = TrainConfig(**CONFIG, optimizer=optimizer, checkpoint_every=3)
    reference, ref_tracker = toys.model(), Tracker()
    expected = train(reference, _loader(toys, own_generator), config=config, hooks=[ref_tracker, Crash()], seed=3)
    assert expected.steps == 18

    with pytest.raises(Killed):
        train(
            toys.model(),
            _loader(toys, own_generator),
            config=config,
            hooks=[Tracker(), Crash(crash_at)],
            seed=3,
            run_dir=tmp_path,
        )

    resumed, tracker = toys.model(), Tracker()
    result = train(
        resumed, _loader(toys, own_generator), config=config, hooks=[tracker, Crash()], seed=3, run_dir=tmp_path
    )
    assert result.resumed_from_step == last_checkpoint
    assert tracker.resumed_from == last_checkpoint
    assert result.steps == 18 and result.steps_run == 18 - (last_checkpoint or 0) and result.epochs == 3
    assert toys.same_weights(resumed, reference)
    assert result.history == expected.history
    assert result.final_loss == expected.final_loss
    assert (tracker.steps, tracker.epochs) == (18, 3) and torch.equal(tracker.total, ref_tracker.total)


def test_a_completed_run_is_not_trained_again(toys, tmp_path):
    config = TrainConfig(**CONFIG, checkpoint_every=5)
    first = toys.model()
    done = train(first, _loader(toys), config=config, hooks=[Tracker()], run_dir=tmp_path)
    latest = json.loads((tmp_path / "checkpoint" / "latest.json").read_text())
    assert latest["complete"] is True and latest["step"] == 18
    assert [p.name for p in (tmp_path / "checkpoint").iterdir() if p.is_dir()] == ["step-000000018"]

    again, tracker = toys.model(), Tracker()
    result = train(again, _loader(toys), config=config.replace(log_every=7), hooks=[tracker], run_dir=tmp_path)
    assert result.steps_run == 0 and result.steps == 18 and result.resumed_from_step == 18
    assert toys.same_weights(again, first)
    assert result.history == done.history and result.final_loss == done.final_loss
    assert (tracker.starts, tracker.ends, tracker.steps) == (1, 1, 18)


def test_max_steps_run_is_complete_for_its_own_config(toys, tmp_path):
    config = TrainConfig(epochs=3, max_steps=4, checkpoint_every=100)
    train(toys.model(), _loader(toys), config=config, run_dir=tmp_path)
    result = train(toys.model(), _loader(toys), config=config, run_dir=tmp_path)
    assert result.steps_run == 0 and result.steps == 4
    with pytest.warns(StaleCheckpointWarning, match=r"max_steps: 4 -> None"):
        longer = train(toys.model(), _loader(toys), config=config.replace(max_steps=None), run_dir=tmp_path)
    assert longer.resumed_from_step is None and longer.steps_run == 18


def test_checkpoint_files_are_safetensors_and_json_only(toys, tmp_path):
    config = TrainConfig(**CONFIG, checkpoint_every=4)
    with pytest.raises(Killed):
        train(toys.model(), _loader(toys), config=config, hooks=[Tracker(), Crash(9)], run_dir=tmp_path)
    files = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    names = sorted(str(p.relative_to(tmp_path)) for p in files)
    assert names == [
        "checkpoint/latest.json",
        "checkpoint/step-000000008/model.safetensors",
        "checkpoint/step-000000008/state.json",
        "checkpoint/step-000000008/state.safetensors",
    ]
    for path in files:
        head = path.read_bytes()[:2]
        assert head[:1] != b"\x80" and head != b"PK", f"{path} looks like a pickle or a torch zip"
        if path.suffix == ".json":
            json.loads(path.read_text())
        else:
            with safe_open(str(path), framework="pt") as f:
                assert len(list(f.keys())) > 0
    meta = json.loads((tmp_path / "checkpoint/step-000000008/state.json").read_text())
    assert (meta["step"], meta["epoch"], meta["batch_in_epoch"], meta["complete"]) == (8, 1, 2, False)
    assert meta["hooks"][0]["type"] == "Tracker" and meta["hooks"][0]["state"]["steps"] == 8
    with safe_open(str(tmp_path / "checkpoint/step-000000008/state.safetensors"), framework="pt") as f:
        keys = set(f.keys())
    assert "rng/torch" in keys and any(k.startswith("optimizer/") for k in keys)
    assert any(k.startswith("hooks/0/") for k in keys)


def test_a_checkpoint_for_another_model_shape_is_not_applied(toys, tmp_path):
    config = TrainConfig(epochs=1, checkpoint_every=2)
    with pytest.raises(Killed):
        train(toys.model(), _loader(toys), config=config, hooks=[Crash(3)], run_dir=tmp_path)
    wider = toys.model(classes=5)
    with pytest.warns(StaleCheckpointWarning, match=r"checkpoint.*step-000000002.*shape mismatch.*3\.weight"):
        result = train(wider, _loader(toys), config=config, hooks=[Crash()], run_dir=tmp_path)
    assert result.resumed_from_step is None and result.steps_run == 6
    latest = json.loads((tmp_path / "checkpoint" / "latest.json").read_text())
    assert latest["step"] == 6 and latest["complete"] is True  # the stale one was replaced
    assert not (tmp_path / "checkpoint" / "step-000000002").exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"config": TrainConfig(epochs=1, checkpoint_every=2, lr=0.5)}, r"lr: 0\.001 -> 0\.5"),
        ({"seed": 9}, "seed 0"),
        ({"model_seed": 2}, "other model weights"),
        ({"hooks": []}, r"hooks \['Crash'\]"),
        ({"n": 160}, "batches per epoch"),
    ],
)
def test_a_checkpoint_of_another_run_is_not_resumed(toys, tmp_path, change, message):
    config = TrainConfig(epochs=1, checkpoint_every=2)
    with pytest.raises(Killed):
        train(toys.model(), _loader(toys), config=config, hooks=[Crash(3)], run_dir=tmp_path / "a")
    # observation-only fields may change: this one resumes
    result = train(
        toys.model(),
        _loader(toys),
        config=config.replace(log_every=1, checkpoint_every=5),
        hooks=[Crash()],
        run_dir=tmp_path / "a",
    )
    assert result.resumed_from_step == 2

    with pytest.raises(Killed):
        train(toys.model(), _loader(toys), config=config, hooks=[Crash(3)], run_dir=tmp_path / "b")
    loader = torch.utils.data.DataLoader(toys.dataset(n=change.get("n", 192)), batch_size=32)
    other_config = change.get("config", config)
    kwargs = dict(config=other_config, hooks=change.get("hooks", [Crash()]), seed=change.get("seed", 0))
    with pytest.warns(StaleCheckpointWarning, match=message):
        stale = train(toys.model(change.get("model_seed", 1)), loader, run_dir=tmp_path / "b", **kwargs)
    fresh_model = toys.model(change.get("model_seed", 1))
    fresh = train(fresh_model, loader, **kwargs)
    assert stale.resumed_from_step is None and stale.steps_run == fresh.steps_run
    assert stale.history == fresh.history


def test_a_corrupt_pointer_is_an_artifact_error(toys, tmp_path):
    (tmp_path / "checkpoint").mkdir()
    (tmp_path / "checkpoint" / "latest.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="latest.json"):
        train(toys.model(), _loader(toys), config=TrainConfig(checkpoint_every=2), run_dir=tmp_path)


def test_without_checkpoint_every_only_the_final_checkpoint_is_written(toys, tmp_path):
    class Steps(TrainHook):
        def on_step_end(self, state):
            assert not (tmp_path / "checkpoint").exists()

    train(toys.model(), _loader(toys), config=TrainConfig(), hooks=[Steps()], run_dir=tmp_path)
    latest = json.loads((tmp_path / "checkpoint" / "latest.json").read_text())
    assert latest["complete"] is True and latest["step"] == 6
    again = train(toys.model(), _loader(toys), config=TrainConfig(), hooks=[Steps()], run_dir=tmp_path)
    assert again.steps_run == 0


def test_state_splitting_round_trips_structure():
    tensors = {}
    state = {"a": torch.arange(3), "nested": [{"t": (torch.ones(2), "x", None)}], 0: {"__odd": 1.5}, "b": True}
    encoded = to_json(state, "s", tensors)
    decoded = from_json(json.loads(json.dumps(encoded)), tensors, where="test")
    assert list(decoded) == ["a", "nested", 0, "b"]
    assert torch.equal(decoded["a"], torch.arange(3)) and isinstance(decoded["nested"][0]["t"], tuple)
    assert torch.equal(decoded["nested"][0]["t"][0], torch.ones(2))
    assert decoded[0] == {"__odd": 1.5} and decoded["b"] is True
    with pytest.raises(ArtifactError, match=r"hook\.fn.*function"):
        to_json({"fn": len}, "h", {}, where="hook")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_resume_on_cuda_matches_an_uninterrupted_run(toys, tmp_path):
    config = TrainConfig(**CONFIG, checkpoint_every=3)
    reference = toys.model()
    train(reference, _loader(toys), config=config, hooks=[Tracker(), Crash()], device="cuda")
    with pytest.raises(Killed):
        train(toys.model(), _loader(toys), config=config, hooks=[Tracker(), Crash(8)], device="cuda", run_dir=tmp_path)
    resumed = toys.model()
    result = train(resumed, _loader(toys), config=config, hooks=[Tracker(), Crash()], device="cuda", run_dir=tmp_path)
    assert result.resumed_from_step == 6
    assert toys.same_weights(resumed, reference)


def test_checkpoints_also_follow_the_clock(toys, tmp_path):
    # checkpoint_minutes tiny: every step is past due, so a killed run resumes from its last step
    config = TrainConfig(epochs=1, checkpoint_minutes=1e-9)
    with pytest.raises(Killed):
        train(toys.model(), _loader(toys), config=config, hooks=[Crash(3)], run_dir=tmp_path)
    latest = json.loads((tmp_path / "checkpoint" / "latest.json").read_text())
    assert latest["step"] == 2 and latest["complete"] is False  # Crash(3) stops in step 3, before its checkpoint
    resumed = train(toys.model(), _loader(toys), config=config, hooks=[Crash()], run_dir=tmp_path)
    assert resumed.resumed_from_step == 2
    # the default clock (10 minutes) never fires in a short run: only the final checkpoint
    quiet_dir = tmp_path / "default"
    train(toys.model(), _loader(toys), config=TrainConfig(epochs=1), hooks=[Crash()], run_dir=quiet_dir)
    assert [p.name for p in (quiet_dir / "checkpoint").glob("step-*")] == ["step-000000006"]
