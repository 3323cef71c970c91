"""A tiny learnable task and MLP for the lottery tests (each training run takes milliseconds)."""

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from torchslim.core import DataSplits
from torchslim.train import TrainHook


class TinyMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 48), nn.ReLU(), nn.Linear(48, 32), nn.ReLU())
        self.classifier = nn.Linear(32, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.body(x))


def tiny_model(seed: int = 0) -> TinyMLP:
    torch.manual_seed(seed)
    return TinyMLP()


def tiny_data(samples: int = 128, seed: int = 0) -> DataSplits:
    """Labels from a fixed random linear teacher, so training really learns something."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(samples + 128, 1, 8, 8, generator=g)
    teacher = torch.randn(64, 4, generator=g)
    y = (x.flatten(1) @ teacher).argmax(1)
    train = DataLoader(
        TensorDataset(x[:samples], y[:samples]), batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(0)
    )
    test = DataLoader(TensorDataset(x[samples:], y[samples:]), batch_size=64)
    return DataSplits(train=train, calibration=test, validation=test, test=test, name="tiny", num_classes=4)


class StartWeights(TrainHook):
    """Records the effective weights of every training run at its start (one dict per run)."""

    def __init__(self) -> None:
        self.runs: list[dict[str, torch.Tensor]] = []

    def on_train_start(self, state) -> None:
        self.runs.append({k: v.detach().clone() for k, v in _effective(state.model).items()})


class SimulatedKill(RuntimeError):
    """What the Kill hook raises."""


class Kill(TrainHook):
    """Raises in the `at_run`-th training run (1-based) after `at_step` steps: a simulated kill."""

    def __init__(self, at_run: int | None, at_step: int = 3) -> None:
        self.at_run = at_run
        self.at_step = at_step
        self.runs = 0

    def on_train_start(self, state) -> None:
        self.runs += 1

    def on_step_end(self, state) -> None:
        if self.runs == self.at_run and state.step == self.at_step:
            raise SimulatedKill(f"killed in training run {self.runs} at step {state.step}")


def _effective(model: nn.Module) -> dict[str, torch.Tensor]:
    from torchslim.io.artifact import baked_state_dict

    return baked_state_dict(model)
