"""The training loop: learning, determinism, max_steps, hooks, clipping, batch formats."""

from __future__ import annotations

import types

import pytest
import torch
from torch import nn

from torchslim.core.errors import ConfigError, DataError, ModelError
from torchslim.train import TrainConfig, TrainHook, TrainingDivergedError, hooks_from_model, train


def _accuracy(model, dataset):
    model.eval()
    with torch.no_grad():
        x, y = dataset.tensors
        return (model(x).argmax(1) == y).float().mean().item()


def test_loss_decreases_and_the_model_learns(toys):
    model = toys.model()
    dataset = toys.dataset(n=256)
    loader = torch.utils.data.DataLoader(dataset, batch_size=32, shuffle=True)
    before = _accuracy(model, dataset)
    result = train(model, loader, config=TrainConfig(epochs=8, lr=1e-2, log_every=8))
    losses = [h["loss"] for h in result.history]
    assert len(losses) == 8 and result.steps == 64 and result.epochs == 8
    assert losses[-1] < 0.5 * losses[0]
    assert result.final_loss == pytest.approx(losses[-1])  # log_every == one epoch here
    assert _accuracy(model, dataset) > max(0.85, before + 0.3)
    assert result.resumed_from_step is None and result.seconds > 0


def test_same_seed_is_bit_identical_and_another_seed_differs(toys):
    config = TrainConfig(epochs=2, lr=1e-2, optimizer="adamw", weight_decay=0.01, schedule="cosine")
    models = [toys.model() for _ in range(3)]
    results = [train(m, toys.loader(), config=config, seed=s) for m, s in zip(models, (7, 7, 8), strict=True)]
    assert toys.same_weights(models[0], models[1])
    assert results[0].history == results[1].history
    assert not toys.same_weights(models[0], models[2])
    assert not toys.same_weights(models[0], toys.model())


def test_global_state_is_left_as_found(toys):
    model = toys.model()
    model.eval()
    torch.manual_seed(123)
    rng = torch.get_rng_state()
    threads = torch.get_num_threads()
    train(model, toys.loader(n=64), config=TrainConfig(epochs=1), seed=5)
    assert torch.equal(torch.get_rng_state(), rng)
    assert torch.get_num_threads() == threads
    assert not model.training  # mode restored


def test_max_steps_stops_mid_epoch(toys):
    loader = toys.loader(n=64, batch_size=16)  # 4 batches
    steps = []

    class Count(TrainHook):
        def on_step_end(self, state):
            steps.append((state.epoch, state.batch_in_epoch, state.step))

    result = train(toys.model(), loader, config=TrainConfig(epochs=5, max_steps=6, log_every=4), hooks=[Count()])
    assert result.steps == 6 and result.steps_run == 6 and result.epochs == 1
    assert steps[-1] == (1, 2, 6)
    assert [h["step"] for h in result.history] == [4, 6]


def test_zero_epochs_trains_nothing_but_runs_start_and_end(toys):
    events = []

    class Rec(TrainHook):
        def on_train_start(self, state):
            events.append("start")

        def on_train_end(self, state):
            events.append("end")

    model = toys.model()
    result = train(model, toys.loader(), config=TrainConfig(epochs=0), hooks=[Rec()])
    assert result.steps == 0 and result.final_loss is None and events == ["start", "end"]
    assert toys.same_weights(model, toys.model())


class _Recorder(TrainHook):
    def __init__(self, name, log):
        self.name, self.log = name, log

    def on_train_start(self, state):
        self.log.append((self.name, "start", state.step))

    def extra_loss(self, state, batch, outputs):
        self.log.append((self.name, "extra", state.step))
        return None

    def on_before_optimizer_step(self, state):
        self.log.append((self.name, "before", state.step))

    def on_step_end(self, state):
        self.log.append((self.name, "step_end", state.step))

    def on_epoch_end(self, state):
        self.log.append((self.name, "epoch_end", state.epoch))

    def on_train_end(self, state):
        self.log.append((self.name, "end", state.step))


def test_hooks_are_called_in_order(toys):
    log = []
    train(
        toys.model(),
        toys.loader(n=32, batch_size=16),
        config=TrainConfig(epochs=2),
        hooks=[_Recorder("a", log), _Recorder("b", log)],
    )

    def step(s):
        return (
            [(n, "extra", s) for n in "ab"] + [(n, "before", s) for n in "ab"] + [(n, "step_end", s + 1) for n in "ab"]
        )

    expected = (
        [("a", "start", 0), ("b", "start", 0)]
        + step(0)
        + step(1)
        + [("a", "epoch_end", 0), ("b", "epoch_end", 0)]
        + step(2)
        + step(3)
        + [("a", "epoch_end", 1), ("b", "epoch_end", 1)]
        + [("a", "end", 4), ("b", "end", 4)]
    )
    assert log == expected


def test_extra_loss_changes_the_gradients_by_its_own_gradient(toys):
    grads = {}

    class Grab(TrainHook):
        def __init__(self, key):
            self.key = key

        def on_before_optimizer_step(self, state):
            grads[self.key] = state.model[0].bias.grad.clone()

    class Pull(TrainHook):
        def extra_loss(self, state, batch, outputs):
            inputs, labels = batch
            assert inputs.shape == (16, 8) and labels.shape == (16,) and outputs.shape == (16, 3)
            return 3.0 * state.model[0].bias.sum()  # d/d bias = 3 everywhere

    config = TrainConfig(epochs=1, max_steps=1)
    loader = toys.loader(n=16, batch_size=16)
    train(toys.model(), loader, config=config, hooks=[Grab("plain")])
    train(toys.model(), loader, config=config, hooks=[Pull(), Grab("pulled")])
    torch.testing.assert_close(grads["pulled"] - grads["plain"], torch.full((16,), 3.0))


def test_grad_clip_bounds_the_update(toys):
    def update_norm(clip):
        model = toys.model(dropout=0.0)
        before = [p.detach().clone() for p in model.parameters()]
        config = TrainConfig(epochs=1, max_steps=1, optimizer="sgd", momentum=0.0, lr=1.0, grad_clip=clip)
        train(model, toys.loader(n=32), config=config)
        return torch.sqrt(sum(((p - b) ** 2).sum() for p, b in zip(model.parameters(), before, strict=True))).item()

    free = update_norm(None)
    assert free > 0.01
    assert update_norm(1e-3) == pytest.approx(1e-3, rel=1e-4)


def test_custom_loss_and_dict_inputs_and_logits_outputs(toys):
    class DictModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = toys.model(dropout=0.0)

        def forward(self, features, scale):
            return types.SimpleNamespace(logits=self.net(features) * scale)

    dataset = toys.dataset(n=64)
    x, y = dataset.tensors
    batches = [({"features": x[i : i + 16], "scale": torch.tensor(1.0)}, y[i : i + 16]) for i in range(0, 64, 16)]
    seen = []

    def loss_fn(outputs, labels):
        seen.append(type(outputs).__name__)
        return nn.functional.cross_entropy(outputs.logits, labels)

    model = DictModel()
    result = train(model, batches, config=TrainConfig(epochs=3, lr=1e-2), loss_fn=loss_fn)
    assert result.steps == 12 and seen == ["SimpleNamespace"] * 12
    assert not toys.same_weights(model.net, toys.model(dropout=0.0))


def test_text_batches_go_through_the_model_tokenizer():
    class CharModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(2, 2)
            self.calls = 0

        def tokenize(self, texts):
            self.calls += 1
            feats = torch.tensor([[t.count("a"), t.count("b")] for t in texts], dtype=torch.float32)
            return {"features": feats}

        def forward(self, features):
            return self.head(features)

    texts = ["aaa", "bbb", "aab", "bba"] * 4
    labels = torch.tensor([0, 1, 0, 1] * 4)
    batches = [(texts[i : i + 4], labels[i : i + 4]) for i in range(0, 16, 4)]
    model = CharModel()
    result = train(model, batches, config=TrainConfig(epochs=20, lr=0.1), include_model_hooks=False)
    assert model.calls == 80
    assert [h["step"] for h in result.history] == [50, 80]
    assert result.final_loss < result.history[0]["loss"]
    with torch.no_grad():
        pred = model(**model.tokenize(texts)).argmax(1)
    assert torch.equal(pred, labels)


def test_bad_batches_and_hooks_fail_clearly(toys):
    with pytest.raises(DataError, match=r"\(inputs, labels\) pairs"):
        train(toys.model(), [torch.randn(4, 8)], config=TrainConfig())
    with pytest.raises(DataError, match="tokenize"):
        train(toys.model(), [(["a", "b"], torch.tensor([0, 1]))], config=TrainConfig())
    with pytest.raises(DataError, match="empty"):
        train(toys.model(), [], config=TrainConfig())
    with pytest.raises(ConfigError, match=r"hooks\[0\] must be a TrainHook"):
        train(toys.model(), toys.loader(), config=TrainConfig(), hooks=[object()])
    with pytest.raises(ConfigError, match="TrainConfig"):
        train(toys.model(), toys.loader(), config={"epochs": 1})
    frozen = toys.model()
    frozen.requires_grad_(False)
    with pytest.raises(ModelError, match="no trainable parameters"):
        train(frozen, toys.loader(), config=TrainConfig())


def test_a_diverging_loss_raises_naming_the_step(toys):
    class Blow(TrainHook):
        def extra_loss(self, state, batch, outputs):
            return torch.tensor(float("nan")) if state.step == 2 else None

    model = toys.model()
    model.eval()
    with pytest.raises(TrainingDivergedError, match="step 3"):
        train(model, toys.loader(), config=TrainConfig(), hooks=[Blow()])
    assert not model.training


def test_model_contributed_hooks_run_after_the_given_ones(toys):
    log = []
    contributed = _Recorder("model", log)

    class WithHooks(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = toys.model()

        def forward(self, x):
            return self.net(x)

        def torchslim_train_hooks(self):
            return [contributed]

    model = WithHooks()
    assert hooks_from_model(model) == [contributed]
    given = _Recorder("given", log)
    train(model, toys.loader(n=16, batch_size=16), config=TrainConfig(), hooks=[given])
    assert log[:2] == [("given", "start", 0), ("model", "start", 0)]
    log.clear()
    train(model, toys.loader(n=16, batch_size=16), config=TrainConfig(), include_model_hooks=False)
    assert log == []


def test_progress_is_quiet_when_stdout_is_not_a_terminal(toys, capsys):
    train(toys.model(), toys.loader(n=32), config=TrainConfig())
    assert capsys.readouterr().out == ""
    train(toys.model(), toys.loader(n=32), config=TrainConfig(), quiet=False)
    assert "train epoch 1/1" in capsys.readouterr().out
