"""Structured, physical channel pruning (``channel_pruning``): removes output channels of
convolutions, neurons of linear layers, FFN neurons and whole attention heads, together with every
coupled dimension (residual adds, concatenation, depthwise / grouped convolutions, BatchNorm,
LayerNorm, attention projections), so the result is a smaller dense model that runs faster.

Coupling comes from :class:`torchslim.graph.ChannelGraph` (Torch-Pruning's dependency graph,
Fang et al. 2023, "DepGraph: Towards any structural pruning"). Channels are scored by the criteria
of :mod:`torchslim.pruning.importance` (group L1/L2 magnitude, BatchNorm scale, Taylor, random) and
chosen per group or globally by :class:`torchslim.pruning.planner.ChannelPlanner`.

The cut is recorded as a ``prune_channels`` plan entry (:func:`torchslim.core.plans.append_plan_entry`)
so loading an artifact rebuilds the smaller architecture before loading the weights.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar, Literal, cast

import torch
from torch import nn
from torch.nn.utils import parametrize

from torchslim.core.config import TechniqueConfig
from torchslim.core.context import Context
from torchslim.core.errors import ConfigError, DataError, ModelError, TargetError
from torchslim.core.plans import append_plan_entry
from torchslim.core.targets import Targets
from torchslim.core.technique import TECHNIQUES, StepOutcome
from torchslim.graph import PRUNE_CHANNELS_KIND, ChannelGraph, call_with, compact_ops, flat_tensors
from torchslim.pruning.importance import accumulate_gradients, channel_criterion
from torchslim.pruning.planner import ChannelPlanner, round_keep
from torchslim.pruning.recovery import RECOVERY_RENAMED, fill_train_defaults, no_recovery, recover
from torchslim.train.config import TrainConfig

Importance = Literal["l1", "l2", "bn_scale", "taylor", "random"]
Scope = Literal["layer", "global"]
NAME = "channel_pruning"

__all__ = ["ChannelPruning", "channel_pruning", "example_input_for", "prune_channels", "round_keep"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class ChannelPruning(TechniqueConfig):
    """Physical channel / neuron / head pruning over coupled channel groups.

    Formula: per group, remove ``n - floor(n (1 - ratio))`` channels of lowest importance
    (``l1``/``l2`` group norm, ``bn_scale`` |gamma|, ``taylor`` |w dL/dw|); globally, the lowest
    ``ratio`` of all mean-normalised scores. Citations: Fang et al. 2023 (DepGraph); Li et al. 2017
    (L1 filters); Liu et al. 2017 (network slimming); Molchanov et al. 2019 (Taylor).

    Attributes:
        ratio: fraction of channels removed, in [0, 1).
        importance: ``l1``, ``l2``, ``bn_scale``, ``taylor`` (needs calibration or train data) or ``random``.
        scope: ``layer`` (each group alike) or ``global`` (one ranking over all groups).
        round_to: keep channel counts at the nearest multiple of this (at least one multiple; e.g. 8
            for SIMD-friendly widths); groups of at most `round_to` channels are left whole.
        per_layer: ``{layer name or "re:regex": ratio}`` overrides for the groups containing those layers.
        max_layer_ratio: with ``scope="global"``, no group loses more than this fraction.
        head_ratio: fraction of attention heads removed in every attention layer (whole heads).
        ffn_ratio: ratio for transformer feed-forward neurons (None: `ratio`).
        schedule: ``one_shot``, or ``iterative`` (``steps`` rounds of ratio k/steps, fine-tuning between).
        steps: rounds of the iterative schedule.
        train: fine-tuning after pruning (after each iterative round); ``epochs: 0`` (the default): none.
            Old flat keys ``finetune_epochs``, ``finetune_max_steps``, ``lr``, ``optimizer`` map into it.
        calibration_batches: batches used to accumulate gradients for ``taylor``.
        strict: raise instead of skipping layers that cannot be pruned.
    """

    name: ClassVar[str] = NAME
    summary: ClassVar[str] = "Physical channel/neuron/head pruning over coupled groups (DepGraph)."
    renamed: ClassVar[Mapping[str, str]] = RECOVERY_RENAMED
    must_not_follow: ClassVar[tuple[str, ...]] = ("magnitude_pruning",)
    order_reason: ClassVar[str] = (
        "channel pruning cuts tensors physically, which would drop the masks of an earlier magnitude_pruning "
        "step; prune channels first, then apply unstructured masks"
    )

    ratio: float = 0.5
    importance: Importance = "l1"
    scope: Scope = "layer"
    round_to: int | None = None
    per_layer: dict[str, float] = dataclasses.field(default_factory=dict)
    max_layer_ratio: float = 0.9
    head_ratio: float = 0.0
    ffn_ratio: float | None = None
    schedule: Literal["one_shot", "iterative"] = "one_shot"
    steps: int = 3
    train: TrainConfig = dataclasses.field(default_factory=no_recovery)
    calibration_batches: int = 4
    strict: bool = False

    def validate(self) -> None:
        self.check("ratio", self.ratio, low=0.0, high=1.0, high_inclusive=False)
        if self.round_to is not None:
            self.check("round_to", self.round_to, low=1)
        for key, value in self.per_layer.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise ConfigError(f"ChannelPruning.per_layer[{key!r}] must be a number, got {value!r}.")
            self.check(f"per_layer[{key!r}]", float(value), low=0.0, high=1.0, high_inclusive=False)
        self.check("max_layer_ratio", self.max_layer_ratio, low=0.0, high=1.0, high_inclusive=False)
        self.check("head_ratio", self.head_ratio, low=0.0, high=1.0, high_inclusive=False)
        if self.ffn_ratio is not None:
            self.check("ffn_ratio", self.ffn_ratio, low=0.0, high=1.0, high_inclusive=False)
        self.check("steps", self.steps, low=1)
        self.check("calibration_batches", self.calibration_batches, low=1)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> TechniqueConfig:
        """As :meth:`TechniqueConfig.from_dict`; a partial ``train`` section keeps this step's defaults."""
        return super().from_dict(fill_train_defaults(data, default=no_recovery(), renamed=cls.renamed))


def example_input_for(model: nn.Module, context: Context) -> Any:
    if context.example_input is not None:
        return context.example_input
    try:
        from torchslim.models import example_input, get_model_spec

        if get_model_spec(model) is not None:
            return example_input(model, batch_size=2)
    except ImportError:  # pragma: no cover - models is part of the package
        pass
    data = context.data
    for split in ("calibration", "train", "validation", "test"):
        loader = getattr(data, split, None) if data is not None else None
        if loader is None:
            continue
        for batch in loader:
            inputs = batch[0] if isinstance(batch, (list, tuple)) and len(batch) == 2 else batch
            if isinstance(inputs, torch.Tensor):
                return inputs[:2]
            if isinstance(inputs, dict):
                return {k: v[:2] for k, v in inputs.items()}
            tokenize = getattr(model, "tokenize", None)
            if isinstance(inputs, (list, tuple)) and inputs and isinstance(inputs[0], str) and callable(tokenize):
                return dict(tokenize(list(inputs[:2])))
            break
    raise ModelError(
        f"channel_pruning needs an example input to trace {type(model).__name__}: pass "
        "Context(example_input=...) or data, or use a built-in model."
    )


def _output_shapes(model: nn.Module, example_input: Any) -> list[tuple[int, ...]]:
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            out = call_with(model, example_input)
    finally:
        for m, flag in modes:
            m.training = flag
    return [tuple(t.shape) for t in flat_tensors(out)]


def _param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _refuse_parametrized(model: nn.Module) -> None:
    for name, module in model.named_modules():
        if parametrize.is_parametrized(module):
            raise ModelError(
                f"channel_pruning: layer {name!r} carries parametrizations (masks or quantizers); "
                "prune channels before applying unstructured masks or fake quantization."
            )


def _calibration_data(config: ChannelPruning, context: Context) -> Any:
    """The loader ``taylor`` importance accumulates gradients on (None for the other criteria)."""
    if config.importance != "taylor":
        return None
    data = context.data
    calib = (getattr(data, "calibration", None) or getattr(data, "train", None)) if data is not None else None
    if calib is None:
        raise DataError("channel_pruning with importance='taylor' needs calibration (or train) data for gradients.")
    return calib


def _check_strict(config: ChannelPruning, planner: ChannelPlanner) -> None:
    if config.strict and planner.skipped:
        detail = "; ".join(f"{n}: {r}" for n, r in planner.skipped.items())
        raise TargetError(f"channel_pruning (strict): cannot prune {detail}.")


@dataclasses.dataclass
class _Pass:
    """What every round of one pruning call shares."""

    model: nn.Module
    config: ChannelPruning
    context: Context
    graph: ChannelGraph
    planner: ChannelPlanner
    criterion: Any
    calibration: Any


def _prune_round(run: _Pass, k: int, fraction: float) -> dict[str, Any]:
    """Round `k` (0-based): cut channels up to `fraction` of the final ratios, then fine-tune."""
    model, config, planner = run.model, run.config, run.planner
    cands = planner.candidates(run.graph, first=k == 0)
    _check_strict(config, planner)
    if k == 0 and not cands:
        raise TargetError(
            "channel_pruning: no prunable channel group among the targets"
            + (
                f" ({'; '.join(f'{n}: {r}' for n, r in list({**planner.skipped, **planner.untouched}.items())[:4])})"
                if planner.skipped or planner.untouched
                else ""
            )
            + "."
        )
    if run.calibration is not None:
        accumulate_gradients(model, run.calibration, config.calibration_batches)
    decisions = planner.plan(run.graph, cands, fraction, run.criterion)
    _check_strict(config, planner)
    planner.apply(run.graph, decisions)
    if run.calibration is not None:
        model.zero_grad(set_to_none=True)
    entry: dict[str, Any] = {
        "round": k + 1,
        "fraction": fraction,
        "groups_cut": len(decisions),
        "params": _param_count(model),
    }
    if config.train.epochs > 0:
        entry["finetune"] = recover(
            model,
            config.train,
            run.context,
            technique=NAME,
            tag=f"round{k + 1}",
            own_run_dir=config.schedule == "iterative",
        )
    return entry


def _run(
    model: nn.Module, config: ChannelPruning, *, targets: Targets | None, context: Context, example_input: Any = None
) -> StepOutcome:
    _refuse_parametrized(model)
    example = example_input if example_input is not None else example_input_for(model, context)
    calibration = _calibration_data(config, context)
    if config.train.epochs > 0:
        context.require_data("train", technique=NAME)
    params_before = _param_count(model)
    graph = ChannelGraph(model, example)
    shapes_before = graph.output_shapes
    planner = ChannelPlanner(model, config, targets, context, example)
    criterion = channel_criterion(config.importance, normalize=config.scope == "global", seed=context.seed)
    run = _Pass(model, config, context, graph, planner, criterion, calibration)
    rounds = [1.0] if config.schedule == "one_shot" else [(k + 1) / config.steps for k in range(config.steps)]
    history = [_prune_round(run, k, fraction) for k, fraction in enumerate(rounds)]
    shapes_after = _output_shapes(model, example)
    if shapes_after != shapes_before:
        raise ModelError(
            f"channel_pruning changed the output shapes of {type(model).__name__} from {shapes_before} to "
            f"{shapes_after}; this model's coupling is not understood, nothing was changed."
        )
    if planner.ops:
        append_plan_entry(model, {"kind": PRUNE_CHANNELS_KIND, "version": 1, "ops": compact_ops(planner.ops)})
    params_after = _param_count(model)
    info = {
        "ratio": config.ratio,
        "importance": config.importance,
        "scope": config.scope,
        "schedule": config.schedule,
        "params_before": params_before,
        "params_after": params_after,
        "param_ratio": params_after / params_before if params_before else 1.0,
        "rounds": history,
        "untouched": planner.untouched,
        "plan_ops": len(planner.ops),
    }
    return StepOutcome(model=model, layers=list(planner.layers.values()), skipped=dict(planner.skipped), info=info)


def prune_channels(
    model: nn.Module,
    example_input: Any,
    *,
    ratio: float = 0.5,
    importance: str = "l1",
    scope: str = "layer",
    round_to: int | None = None,
    targets: Targets | None = None,
    per_layer: dict[str, float] | None = None,
    head_ratio: float = 0.0,
    ffn_ratio: float | None = None,
    max_layer_ratio: float = 0.9,
    data: Any = None,
    seed: int = 0,
    strict: bool = False,
    inplace: bool = False,
) -> StepOutcome:
    """One-shot physical channel pruning; returns the outcome whose ``model`` is the pruned model.

    Works on a copy unless `inplace` (on error the input model is unchanged either way unless
    `inplace`). `data` (a `DataSplits`) is needed only for ``importance="taylor"``.
    """
    config = ChannelPruning(
        ratio=ratio,
        importance=cast(Importance, importance),  # checked by the config
        scope=cast(Scope, scope),
        round_to=round_to,
        per_layer=per_layer or {},
        head_ratio=head_ratio,
        ffn_ratio=ffn_ratio,
        max_layer_ratio=max_layer_ratio,
        strict=strict,
    )
    work = model if inplace else copy.deepcopy(model)
    return _run(work, config, targets=targets, context=Context(data=data, seed=seed), example_input=example_input)


@TECHNIQUES.handles(ChannelPruning)
def channel_pruning(
    model: nn.Module, config: ChannelPruning, *, targets: Targets | None, context: Context
) -> StepOutcome:
    """Handler of :class:`ChannelPruning`: prunes (and fine-tunes) a copy and returns it.

    Any error (bad targets, untraceable model, a layer that would lose every channel, missing data)
    is raised before the caller's model could change: all work happens on a deep copy.
    """
    return _run(copy.deepcopy(model), config, targets=targets, context=context)
