"""The program the data-parallel tests launch: ``torchrun --nproc-per-node N this_file.py SPEC.json``, or plain
``python this_file.py SPEC.json`` for the one-process reference (no test functions live here).

It trains toy models with the real techniques (fine-tuning, distillation, QAT, AGP pruning) through
their handlers, so the one training path runs data-parallel by itself, and writes per rank
``OUT/<technique>/rank<R>.json`` (digests of every tensor and of the masks, test accuracy, loss
history) and, on rank 0, ``OUT/<technique>/model.safetensors``.

SPEC keys: ``out``, ``techniques`` (list), ``seed``, ``epochs``, ``batch``, ``run_dir`` (None: no
checkpoints), ``checkpoint_every``, ``kill_at_step`` (SIGKILL every rank at the end of that step),
``perturb_other_ranks`` (ranks > 0 start from noisy model and teacher: the broadcast must undo it).
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from torchslim.core.context import Context, DataSplits
from torchslim.core.technique import TECHNIQUES
from torchslim.distillation import Distill
from torchslim.measure import evaluate
from torchslim.pruning.masks import masked_layers
from torchslim.pruning.unstructured import MagnitudePruning
from torchslim.quantization import Quantize
from torchslim.train import FineTune, TrainConfig, TrainHook, TrainState
from torchslim.train.distributed import state_digests


class KillAt(TrainHook):
    """SIGKILLs this process at the end of step `step` (after the checkpoint of the step before)."""

    def __init__(self, step: int | None) -> None:
        self.step = step

    def on_step_end(self, state: TrainState) -> None:
        if self.step is not None and state.step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


class Toy(nn.Module):
    """An MLP without dropout (so one and two processes can agree to rounding), with a kill switch hook."""

    def __init__(self, seed: int, hidden: int = 32, kill_at: int | None = None) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.net = nn.Sequential(
                nn.Linear(8, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 3)
            )
        self._kill = KillAt(kill_at)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def torchslim_train_hooks(self) -> list[TrainHook]:
        return [self._kill]


def toy_data(n: int, seed: int) -> torch.utils.data.TensorDataset:
    """Gaussian inputs labelled by one fixed random linear map (the same for every split)."""
    x = torch.randn(n, 8, generator=torch.Generator().manual_seed(seed))
    w = torch.randn(8, 3, generator=torch.Generator().manual_seed(12345))
    return torch.utils.data.TensorDataset(x, (x @ w).argmax(1))


def splits(batch: int) -> DataSplits:
    # 767 samples: with batch 64 the last global batch of 63 splits 32 + 31, so the loss weights matter
    train = torch.utils.data.DataLoader(toy_data(767, 0), batch_size=batch, shuffle=True)
    calibration = torch.utils.data.DataLoader(toy_data(128, 1), batch_size=64)
    test = torch.utils.data.DataLoader(toy_data(512, 2), batch_size=256)
    return DataSplits(train=train, calibration=calibration, validation=test, test=test, num_classes=3)


def config_for(technique: str, train: TrainConfig) -> Any:
    if technique == "finetune":
        return FineTune(train=train)
    if technique == "distill":
        return Distill(temperature=4.0, alpha=0.7, train=train)
    if technique == "qat":
        return Quantize(mode="qat", train=train)
    if technique == "agp":
        return MagnitudePruning(sparsity=0.6, schedule="agp", frequency=4, train=train)
    raise ValueError(technique)


def perturb(module: nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))


def trained_teacher(data: DataSplits) -> nn.Module:
    """A wider MLP fine-tuned alone in every process (each rank gets the same; the broadcast makes sure)."""
    teacher = Toy(seed=100, hidden=64)
    config = FineTune(train=TrainConfig(epochs=6, lr=1e-2, distributed="off", checkpoint_minutes=None))
    TECHNIQUES.handler_for(config)(teacher, config, targets=None, context=Context(data=data, quiet=True))
    return teacher


def run(spec: dict[str, Any], technique: str, rank: int) -> None:
    data = splits(spec["batch"])
    teacher = trained_teacher(data) if technique == "distill" else None
    model = Toy(seed=spec["seed"], kill_at=spec.get("kill_at_step"))
    if rank > 0 and spec.get("perturb_other_ranks"):
        perturb(model, 1000 + rank)
        if teacher is not None:
            perturb(teacher, 2000 + rank)
    run_dir = Path(spec["run_dir"]) / technique if spec.get("run_dir") else None
    train = TrainConfig(
        epochs=spec["epochs"], lr=1e-2, checkpoint_every=spec.get("checkpoint_every"), checkpoint_minutes=None
    )
    config = config_for(technique, train)
    context = Context(data=data, seed=spec["seed"], quiet=True, run_dir=run_dir, teacher=teacher)
    outcome = TECHNIQUES.handler_for(config)(model, config, targets=None, context=context)
    final = outcome.model
    masks = {name: state_digests_of(mask) for name, _, mask in masked_layers(final)}
    out = Path(spec["out"]) / technique
    out.mkdir(parents=True, exist_ok=True)
    info = {
        "accuracy": evaluate(final, data.test).accuracy,
        "digests": state_digests(final),
        "masks": masks,
        "sparsity": mask_sparsity(final),
        "history": outcome.info.get("history"),
        "info": {k: v for k, v in outcome.info.items() if isinstance(v, (int, float, str))},
    }
    (out / f"rank{rank}.json").write_text(json.dumps(info, default=str))
    if rank == 0:
        save_file(
            {k: v.detach().float().contiguous() for k, v in final.state_dict().items()}, str(out / "model.safetensors")
        )


def state_digests_of(mask: torch.Tensor) -> str:
    holder = nn.Module()
    holder.register_buffer("mask", mask)
    return state_digests(holder)["mask"]


def mask_sparsity(model: nn.Module) -> float | None:
    masks = [mask for _, _, mask in masked_layers(model)]
    if not masks:
        return None
    return 1.0 - sum(int(m.sum()) for m in masks) / sum(m.numel() for m in masks)


def main() -> None:
    torch.set_num_threads(1)
    spec = json.loads(Path(sys.argv[1]).read_text())
    rank = int(os.environ.get("RANK", "0"))
    for technique in spec["techniques"]:
        run(spec, technique, rank)


if __name__ == "__main__":
    main()
