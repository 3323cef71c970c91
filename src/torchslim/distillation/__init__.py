"""Knowledge distillation: losses (logit KD, FitNets hints, attention transfer, TinyBERT, DistilBERT
cosine), feature taps with automatic layer pairing, student builders (shallower DistilBERT-style
copies, narrower pruned copies, built-in models), a training-loop hook and the ``distill`` technique.

Importing this package registers the ``distill`` technique in :data:`torchslim.core.TECHNIQUES` and
the ``drop_layers`` plan replay in :mod:`torchslim.core.plans` (so loading an artifact rebuilds a
depth-reduced student).
"""

from torchslim.distillation.adaptive import Candidate, ProbeScore, SettingsChoice, candidates_for, choose_settings
from torchslim.distillation.hook import (
    DistillationHook,
    FeaturePair,
    auto_pairs,
    resolve_pairs,
    zero_task_loss,
)
from torchslim.distillation.losses import (
    FEATURE_LOSSES,
    AttentionMapMSE,
    AttentionTransferLoss,
    CosineLoss,
    FeatureLoss,
    HiddenStateMSE,
    HintLoss,
    KDLoss,
    feature_loss,
    kd_loss,
    make_adapter,
    soft_target_loss,
)
from torchslim.distillation.students import (
    DROP_LAYERS_KIND,
    StudentSpec,
    apply_depth_plan,
    build_student,
    narrow_copy,
    parse_student_spec,
    plan_depth,
    pruning_available,
    shallow_copy,
)
from torchslim.distillation.taps import FeatureTaps, candidate_layers, find_stages, pair_by_depth
from torchslim.distillation.technique import KD, Distill, DistillResult, distill, distill_step

__all__ = [
    "AttentionMapMSE",
    "AttentionTransferLoss",
    "Candidate",
    "CosineLoss",
    "DROP_LAYERS_KIND",
    "Distill",
    "DistillResult",
    "DistillationHook",
    "FEATURE_LOSSES",
    "FeatureLoss",
    "FeaturePair",
    "FeatureTaps",
    "HiddenStateMSE",
    "HintLoss",
    "KD",
    "KDLoss",
    "StudentSpec",
    "apply_depth_plan",
    "auto_pairs",
    "build_student",
    "candidate_layers",
    "candidates_for",
    "choose_settings",
    "distill",
    "distill_step",
    "feature_loss",
    "find_stages",
    "kd_loss",
    "make_adapter",
    "narrow_copy",
    "pair_by_depth",
    "parse_student_spec",
    "plan_depth",
    "ProbeScore",
    "pruning_available",
    "resolve_pairs",
    "SettingsChoice",
    "shallow_copy",
    "soft_target_loss",
    "zero_task_loss",
]
