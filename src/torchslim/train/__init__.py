"""The one small training loop that runs training-time hooks (fine-tuning, QAT, distillation,
gradual pruning), its checkpoints, and the ``finetune`` technique.

A technique trains through :func:`train_in_context` (device, seed, threads, verbosity and run
directory from the Context); :func:`train` is the loop itself. Importing this package registers
``finetune`` in :data:`torchslim.core.TECHNIQUES`.
"""

from torchslim.train.config import TrainConfig, schedule_factor
from torchslim.train.finetune import FineTune
from torchslim.train.hooks import TrainHook, TrainState, hooks_from_model
from torchslim.train.loop import (
    StaleCheckpointWarning,
    TrainingDivergedError,
    TrainResult,
    logits_of,
    run_model,
    train,
)
from torchslim.train.scope import training_scope
from torchslim.train.step import result_info, train_in_context

__all__ = [
    "FineTune",
    "StaleCheckpointWarning",
    "TrainConfig",
    "TrainHook",
    "TrainResult",
    "TrainState",
    "TrainingDivergedError",
    "hooks_from_model",
    "logits_of",
    "run_model",
    "schedule_factor",
    "train",
    "result_info",
    "train_in_context",
    "training_scope",
]
