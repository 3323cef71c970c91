"""Fine-tuning inside pruning steps, through the one training loop (`torchslim.train.train`)."""

from __future__ import annotations

from typing import Any, Sequence

from torch import nn

from torchslim.core.context import Context


def finetune(
    model: nn.Module,
    context: Context,
    *,
    technique: str,
    epochs: int,
    max_steps: int | None,
    lr: float,
    optimizer: str,
    hooks: Sequence[Any] = (),
    tag: str = "finetune",
) -> dict[str, Any]:
    """Train `model` in place on ``context.data.train``; return steps, epochs, final loss, seconds."""
    from torchslim.train import TrainConfig, train, training_scope

    loader = context.require_data("train", technique=technique)
    config = TrainConfig(epochs=epochs, max_steps=max_steps, lr=lr, optimizer=optimizer)
    with training_scope(model, threads=context.threads):
        result = train(
            model,
            loader,
            config=config,
            hooks=list(hooks),
            seed=context.seed,
            quiet=True if context.quiet else None,
            device=context.device,
        )
    return {
        "tag": tag,
        "steps": result.steps,
        "epochs": result.epochs,
        "final_loss": result.final_loss,
        "seconds": result.seconds,
    }
