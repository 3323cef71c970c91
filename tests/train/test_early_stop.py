"""Early stopping (``TrainConfig.early_stop_patience``): off by default, stops on a plateau of the
epoch mean loss, survives checkpoints, and older checkpoints without the option still resume."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from torchslim.train import TrainConfig, TrainHook, train

# per-epoch offsets added to the loss: improves by 1.0, then by only 0.1 twice, then a lot again
OFFSETS = [5.0, 4.0, 3.9, 3.8, 1.0, 0.5]


class Offset(TrainHook):
    """Adds OFFSETS[epoch] to the loss, so the epoch mean loss is known up to the (frozen) task loss."""

    def __init__(self, crash_at: int | None = None) -> None:
        self.crash_at = crash_at

    def extra_loss(self, state, batch, outputs):
        return torch.tensor(OFFSETS[state.epoch])

    def on_step_end(self, state):
        if state.step == self.crash_at:
            raise KeyboardInterrupt


def _config(**changes):
    # a learning rate this small keeps the task loss constant to far below min_delta
    return TrainConfig(**{"epochs": len(OFFSETS), "lr": 1e-12, "optimizer": "sgd", "momentum": 0.0, **changes})


def test_off_by_default_trains_every_epoch(toys):
    assert TrainConfig().early_stop_patience is None
    result = train(toys.model(), toys.loader(n=32, batch_size=8, shuffle=False), config=_config(), hooks=[Offset()])
    assert result.epochs == len(OFFSETS) and result.steps == 4 * len(OFFSETS) and not result.stopped_early


@pytest.mark.parametrize(("patience", "min_delta", "epochs"), [(2, 0.5, 4), (3, 0.5, 6), (2, 0.0, 6), (1, 0.5, 3)])
def test_stops_after_patience_epochs_without_improvement(toys, patience, min_delta, epochs):
    config = _config(early_stop_patience=patience, early_stop_min_delta=min_delta)
    result = train(toys.model(), toys.loader(n=32, batch_size=8, shuffle=False), config=config, hooks=[Offset()])
    assert result.epochs == epochs and result.steps == 4 * epochs
    assert result.stopped_early == (epochs < len(OFFSETS))


def test_an_interrupted_early_stopping_run_resumes_to_the_same_end(toys, tmp_path):
    config = _config(early_stop_patience=2, early_stop_min_delta=0.5, checkpoint_every=2, lr=1e-2)
    loader = toys.loader(n=32, batch_size=8)
    whole = toys.model()
    expected = train(whole, loader, config=config, hooks=[Offset()], seed=4)
    assert expected.stopped_early and expected.epochs == 4
    with pytest.raises(KeyboardInterrupt):
        train(toys.model(), loader, config=config, hooks=[Offset(crash_at=13)], seed=4, run_dir=tmp_path)
    resumed_model = toys.model()
    resumed = train(resumed_model, loader, config=config, hooks=[Offset()], seed=4, run_dir=tmp_path)
    assert resumed.resumed_from_step == 12 and resumed.stopped_early and resumed.epochs == 4
    assert toys.same_weights(resumed_model, whole) and resumed.history == expected.history
    again = train(toys.model(), loader, config=config, hooks=[Offset()], seed=4, run_dir=tmp_path)
    assert again.steps_run == 0 and again.stopped_early and again.steps == 16  # complete: not trained again


def test_a_checkpoint_written_before_the_option_existed_still_resumes(toys, tmp_path):
    config = TrainConfig(epochs=2, lr=1e-2)
    loader = toys.loader(n=32, batch_size=8)
    train(toys.model(), loader, config=config, run_dir=tmp_path)
    latest = json.loads((tmp_path / "checkpoint" / "latest.json").read_text())
    state_file = tmp_path / "checkpoint" / latest["dir"] / "state.json"
    meta = json.loads(state_file.read_text())
    for key in ("early_stop_patience", "early_stop_min_delta"):
        del meta["config"][key]
    for key in ("best_epoch_loss", "epochs_without_improvement", "stopped_early"):
        del meta["meter"][key]
    state_file.write_text(json.dumps(meta))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no StaleCheckpointWarning
        result = train(toys.model(), loader, config=config, run_dir=tmp_path)
    assert result.resumed_from_step == 8 and result.steps_run == 0
