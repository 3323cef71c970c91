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
from torchslim.core.errors import ConfigError, DataError, ModelError, TargetError, TorchSlimError
from torchslim.core.plans import append_plan_entry
from torchslim.core.targets import Targets
from torchslim.core.technique import TECHNIQUES, StepOutcome
from torchslim.graph import (
    PRUNE_CHANNELS_KIND,
    SEARCH_TIME_LIMIT_S,
    ChannelGraph,
    call_with,
    compact_ops,
    flat_tensors,
    retie,
    tied_parameters,
    without_cache,
)
from torchslim.pruning.importance import accumulate_gradients, channel_criterion
from torchslim.pruning.planner import ChannelPlanner, GroupBroke, round_keep
from torchslim.pruning.recovery import RECOVERY_RENAMED, fill_train_defaults, no_recovery, recover
from torchslim.train.config import TrainConfig

Importance = Literal["l1", "l2", "bn_scale", "taylor", "random"]
Scope = Literal["layer", "global"]
NAME = "channel_pruning"

CACHE_NOTE = (
    "use_cache was turned off while tracing and checking (a key/value cache output cannot be traced); "
    "the pruned model keeps the setting it had"
)

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
        hidden_ratio: fraction of a transformer's hidden size (the embedding width shared by every
            residual connection, LayerNorm and bare parameters such as position embeddings) removed;
            0 (the default) keeps it.
        ffn_ratio: ratio for transformer feed-forward neurons (None: `ratio`).
        schedule: ``one_shot``, or ``iterative`` (``steps`` rounds of ratio k/steps, fine-tuning between).
        steps: rounds of the iterative schedule.
        train: fine-tuning after pruning (after each iterative round); ``epochs: 0`` (the default): none.
            Old flat keys ``finetune_epochs``, ``finetune_max_steps``, ``lr``, ``optimizer`` map into it.
        calibration_batches: batches used to accumulate gradients for ``taylor``.
        strict: raise instead of skipping layers that cannot be pruned (partial coverage is an error).
        time_limit: seconds the dependency search may take before it stops with an error naming the
            layer it was on (None: no limit).
        max_retries: how many couplings that break the model may be found and left unpruned (each
            costs one more pruning pass) before the step gives up with an error naming them.
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
    hidden_ratio: float = 0.0
    ffn_ratio: float | None = None
    schedule: Literal["one_shot", "iterative"] = "one_shot"
    steps: int = 3
    train: TrainConfig = dataclasses.field(default_factory=no_recovery)
    calibration_batches: int = 4
    strict: bool = False
    time_limit: float | None = SEARCH_TIME_LIMIT_S
    max_retries: int = 8

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
        self.check("hidden_ratio", self.hidden_ratio, low=0.0, high=1.0, high_inclusive=False)
        if self.time_limit is not None:
            self.check("time_limit", self.time_limit, low=0.0, low_inclusive=False)
        self.check("max_retries", self.max_retries, low=0)
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
        _raise_partial(planner.skipped)


def _raise_partial(skipped: dict[str, str]) -> None:
    n = len(skipped)
    detail = "; ".join(f"{name}: {reason}" for name, reason in skipped.items())
    raise TargetError(f"channel_pruning (strict): {n} layer{'s' if n != 1 else ''} skipped because {detail}.")


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


def _attempt(
    model: nn.Module, config: ChannelPruning, targets: Targets | None, context: Context, prep: _Prep, check_each: bool
) -> StepOutcome:
    """One pruning pass over `model` (a copy; changed in place). Raises :class:`GroupBroke` when a cut
    group breaks the model (`check_each`: tested after every group) and :class:`_AllAtOnceFailed`
    when the model only fails after all cuts."""
    params_before = _param_count(model)
    graph = ChannelGraph(model, prep.example, time_limit=config.time_limit, search_skipped=prep.slow)
    shapes_before = graph.output_shapes
    planner = ChannelPlanner(model, config, targets, context, prep.example)
    planner.avoid = dict(prep.avoid)
    ties = tied_parameters(model)
    if check_each:
        planner.check = _shape_check(model, prep.example, shapes_before, ties)
    criterion = channel_criterion(config.importance, normalize=config.scope == "global", seed=context.seed)
    run = _Pass(model, config, context, graph, planner, criterion, prep.calibration)
    rounds = [1.0] if config.schedule == "one_shot" else [(k + 1) / config.steps for k in range(config.steps)]
    history = [_prune_round(run, k, fraction) for k, fraction in enumerate(rounds)]
    try:
        _shape_check(model, prep.example, shapes_before, ties)(None)
    except Exception as exc:  # noqa: BLE001 - found per group on the next pass
        raise _AllAtOnceFailed(str(exc)) from exc
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
        "notes": list(graph.notes),
        "not_understood": sorted(planner.avoid.values()),
    }
    return StepOutcome(model=model, layers=list(planner.layers.values()), skipped=dict(planner.skipped), info=info)


@dataclasses.dataclass
class _Prep:
    example: Any
    calibration: Any
    avoid: dict[frozenset[str], str] = dataclasses.field(default_factory=dict)
    slow: dict[str, str] = dataclasses.field(default_factory=dict)


class _AllAtOnceFailed(Exception):
    """The model broke after all groups were cut; the next pass cuts and checks them one by one."""


def _shape_check(model: nn.Module, example: Any, before: list[tuple[int, ...]], ties: Any) -> Any:
    def check(_group: Any) -> None:
        retie(model, ties)
        after = _output_shapes(model, example)
        if after != before:
            raise RuntimeError(f"the output shapes changed from {before} to {after}")

    return check


def _run(
    model: nn.Module,
    config: ChannelPruning,
    *,
    targets: Targets | None,
    context: Context,
    example_input: Any = None,
    inplace: bool = False,
) -> StepOutcome:
    """Prune a copy of `model` (the caller's model is never changed unless `inplace`).

    A group whose cut breaks the model (an error inside the cut, or the pruned model no longer runs
    or changes its output shape) is found, left whole and reported with the exclude that silences
    it, up to ``config.max_retries`` such groups; any other failure inside tracing, scoring or
    surgery is a :class:`ModelError` and nothing is changed.
    """
    _refuse_parametrized(model)
    example = example_input if example_input is not None else example_input_for(model, context)
    prep = _Prep(example, _calibration_data(config, context))
    if config.train.epochs > 0:
        context.require_data("train", technique=NAME)
    check_each = inplace
    for _ in range(config.max_retries + 2):
        work = model if inplace else copy.deepcopy(model)
        try:
            with without_cache(work) as cache_was_on:
                outcome = _attempt(work, config, targets, context, prep, check_each)
            if cache_was_on:
                outcome.info["notes"].insert(0, CACHE_NOTE)
            _check_strict_outcome(config, outcome)
            return outcome
        except GroupBroke as broke:
            if inplace or broke.key in prep.avoid:
                raise ModelError(f"channel_pruning: {broke.reason}") from broke
            prep.avoid[broke.key] = broke.reason
        except _AllAtOnceFailed as failed:
            if check_each:
                raise ModelError(_unclear(model, str(failed))) from failed
            check_each = True
        except TorchSlimError:
            raise
        except Exception as exc:  # noqa: BLE001 - any other failure is refused, nothing changed
            raise ModelError(_unclear(model, f"{type(exc).__name__}: {exc}")) from exc
    raise ModelError(
        f"channel_pruning: gave up after {len(prep.avoid)} couplings not understood: " + "; ".join(prep.avoid.values())
    )


def _unclear(model: nn.Module, detail: str) -> str:
    return (
        f"channel_pruning: the coupling of {type(model).__name__} is not understood "
        f"({' '.join(detail.split())[:300]}); "
        "nothing was changed. Exclude the layers named above with targets: {exclude: [...]}, or prune part of "
        "the model by naming it in targets."
    )


def _check_strict_outcome(config: ChannelPruning, outcome: StepOutcome) -> None:
    if config.strict and outcome.skipped:
        _raise_partial(dict(outcome.skipped))


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
    hidden_ratio: float = 0.0,
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
        hidden_ratio=hidden_ratio,
        ffn_ratio=ffn_ratio,
        max_layer_ratio=max_layer_ratio,
        strict=strict,
    )
    return _run(
        model,
        config,
        targets=targets,
        context=Context(data=data, seed=seed),
        example_input=example_input,
        inplace=inplace,
    )


@TECHNIQUES.handles(ChannelPruning)
def channel_pruning(
    model: nn.Module, config: ChannelPruning, *, targets: Targets | None, context: Context
) -> StepOutcome:
    """Handler of :class:`ChannelPruning`: prunes (and fine-tunes) a copy and returns it.

    Any error (bad targets, untraceable model, a layer that would lose every channel, missing data)
    is raised before the caller's model could change: all work happens on a deep copy.
    """
    return _run(model, config, targets=targets, context=context)
