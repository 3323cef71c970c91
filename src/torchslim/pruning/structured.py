"""Structured, physical channel pruning (``channel_pruning``): removes output channels of
convolutions, neurons of linear layers, FFN neurons and whole attention heads, together with every
coupled dimension (residual adds, concatenation, depthwise / grouped convolutions, BatchNorm,
LayerNorm, attention projections), so the result is a smaller dense model that runs faster.

Coupling comes from :class:`torchslim.graph.ChannelGraph` (Torch-Pruning's dependency graph,
Fang et al. 2023, "DepGraph: Towards any structural pruning"). Each group of coupled channels is
scored per channel ``c`` with

* ``l1`` / ``l2``: ``I_c = mean over the group's layers of ||W_layer[c]||_p`` (group magnitude;
  Li et al. 2017, "Pruning filters for efficient ConvNets", for the single-layer L1 criterion);
* ``bn_scale``: ``I_c = mean |gamma_c|`` over the group's BatchNorms (Liu et al. 2017, "Learning
  efficient convolutional networks through network slimming"); groups without BatchNorm are skipped;
* ``taylor``: ``I_c = mean over layers of sum |w * dL/dw|`` over the channel's weights, with
  gradients accumulated on calibration batches (Molchanov et al. 2019, "Importance estimation for
  neural network pruning");
* ``random``: a seeded baseline.

``scope="layer"`` removes ``n - floor(n (1 - ratio))`` channels of each group;
``scope="global"`` ranks mean-normalised scores of all groups together and removes the lowest
``ratio`` of all channels (no group losing more than ``max_layer_ratio``). ``round_to`` rounds
every kept count to the nearest multiple (at least one multiple). Attention layers lose whole
heads (``head_ratio`` of them, lowest mean score); transformer FFN groups use ``ffn_ratio``; a
transformer's hidden size (shared by the embeddings and every residual connection) is not pruned.

The cut is recorded as a ``prune_channels`` plan entry on ``model.torchslim_plan`` so
``torchslim.io.load`` rebuilds the smaller architecture before loading the weights.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any, ClassVar, Literal

import torch
from torch import nn
from torch.nn.utils import parametrize

from torchslim.core.config import TechniqueConfig
from torchslim.core.context import Context
from torchslim.core.errors import ConfigError, DataError, ModelError, TargetError
from torchslim.core.targets import Targets
from torchslim.core.technique import TECHNIQUES, StepOutcome
from torchslim.graph import PRUNE_CHANNELS_KIND, ROOT_TYPES, ChannelGraph, ChannelGroup
from torchslim.graph.dependency import compact_ops
from torchslim.graph.surgery import call_with, get_module
from torchslim.pruning._select import _direct, match_per_layer

Importance = Literal["l1", "l2", "bn_scale", "taylor", "random"]


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
        finetune_epochs, finetune_max_steps, lr, optimizer: fine-tuning after pruning (after each
            iterative round); 0 epochs: none.
        calibration_batches: batches used to accumulate gradients for ``taylor``.
        strict: raise instead of skipping layers that cannot be pruned.
    """

    name: ClassVar[str] = "channel_pruning"
    summary: ClassVar[str] = "Physical channel/neuron/head pruning over coupled groups (DepGraph)."
    must_not_follow: ClassVar[tuple[str, ...]] = ("magnitude_pruning",)
    order_reason: ClassVar[str] = (
        "channel pruning cuts tensors physically, which would drop the masks of an earlier magnitude_pruning "
        "step; prune channels first, then apply unstructured masks"
    )

    ratio: float = 0.5
    importance: Importance = "l1"
    scope: Literal["layer", "global"] = "layer"
    round_to: int | None = None
    per_layer: dict[str, float] = dataclasses.field(default_factory=dict)
    max_layer_ratio: float = 0.9
    head_ratio: float = 0.0
    ffn_ratio: float | None = None
    schedule: Literal["one_shot", "iterative"] = "one_shot"
    steps: int = 3
    finetune_epochs: int = 0
    finetune_max_steps: int | None = None
    lr: float = 1e-3
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
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
        self.check("finetune_epochs", self.finetune_epochs, low=0)
        if self.finetune_max_steps is not None:
            self.check("finetune_max_steps", self.finetune_max_steps, low=1)
        self.check("lr", self.lr, low=0.0, low_inclusive=False)
        self.check("calibration_batches", self.calibration_batches, low=1)


# --------------------------------------------------------------------------------------------
# importance


def _criterion(kind: str, *, normalize: bool, seed: int) -> Any:
    import torch_pruning as tp

    norm = "mean" if normalize else None
    if kind == "l1":
        return tp.importance.GroupMagnitudeImportance(p=1, normalizer=norm)
    if kind == "l2":
        return tp.importance.GroupMagnitudeImportance(p=2, normalizer=norm)
    if kind == "bn_scale":
        return tp.importance.BNScaleImportance(normalizer=norm)
    if kind == "taylor":
        return tp.importance.GroupTaylorImportance(normalizer=norm)
    if kind == "random":
        generator = torch.Generator().manual_seed(int(seed))

        def random_importance(group: Any) -> torch.Tensor:
            return torch.rand(len(group[0].idxs), generator=generator)

        return random_importance
    raise ConfigError(f"Unknown importance {kind!r}; known: ['l1', 'l2', 'bn_scale', 'taylor', 'random'].")


def _accumulate_gradients(model: nn.Module, loader: Any, batches: int) -> int:
    """Sum the task-loss gradients of `batches` batches into ``.grad`` (eval mode); return samples used."""
    from torchslim.train import logits_of, run_model

    model.zero_grad(set_to_none=True)
    seen = 0
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.enable_grad():
            for i, batch in enumerate(loader):
                if i >= batches:
                    break
                if not isinstance(batch, (list, tuple)) or len(batch) != 2:
                    raise DataError("taylor importance needs (inputs, labels) batches.")
                inputs, labels = batch
                logits = logits_of(run_model(model, inputs))
                loss = nn.functional.cross_entropy(logits, torch.as_tensor(labels))
                loss.backward()
                seen += int(torch.as_tensor(labels).shape[0])
    finally:
        for m, flag in modes:
            m.training = flag
    if seen == 0:
        raise DataError("taylor importance read no calibration samples (the loader is empty).")
    return seen


# --------------------------------------------------------------------------------------------
# planning which channels go


def round_keep(keep: int, channels: int, round_to: int | None) -> int:
    """`keep` rounded to the nearest multiple of `round_to` (at least one multiple, at most `channels`)."""
    if not round_to or round_to <= 1:
        return keep
    if channels <= round_to:
        return channels
    rounded = max(round_to, int(round(keep / round_to)) * round_to)
    return min(rounded, channels)


def _slice_scores(imp: torch.Tensor, slices: int) -> torch.Tensor:
    return imp.reshape(slices, -1).mean(dim=0) if slices > 1 else imp


def _indices_for(slice_order: torch.Tensor, remove_per_slice: int, per_slice: int, slices: int) -> list[int]:
    chosen = slice_order[:remove_per_slice].tolist()
    return sorted(int(c) + s * per_slice for s in range(slices) for c in chosen)


@dataclasses.dataclass
class _Candidate:
    group: ChannelGroup
    kind: str  # channels | ffn | heads
    key: frozenset[str]
    ratio: float | None  # own ratio (layer scope / per-layer / ffn); None = in the global pool


def _group_key(group: ChannelGroup) -> frozenset[str]:
    return frozenset(group.out_layers)


class _Planner:
    def __init__(self, model: nn.Module, config: ChannelPruning, targets: Targets | None, context: Context,
                 example_input: Any) -> None:
        self.model = model
        self.config = config
        self.targets = targets
        self.context = context
        self.example_input = example_input
        self.original: dict[frozenset[str], int] = {}  # per-slice channels (or heads) at the start
        self.skipped: dict[str, str] = {}
        self.untouched: dict[str, str] = {}
        self.ops: list[dict[str, Any]] = []
        self.layers: dict[frozenset[str], dict[str, Any]] = {}
        self._selected: set[str] | None = None
        self._direct: set[str] = set()

    # -- which groups ----------------------------------------------------------------------

    def _select(self) -> None:
        targets = self.targets or Targets()
        wildcard = not targets.names and not targets.types
        if wildcard:
            candidates = [n for n, m in self.model.named_modules() if n and isinstance(m, ROOT_TYPES)]
            selected = targets.resolve(self.model, candidates=candidates)
            self._selected = {n for n, _ in selected}
            self._direct = set(self._selected)
            self._wildcard = True
        else:
            selected = targets.resolve(self.model)
            self._selected = {n for n, _ in selected}
            self._direct = {n for n, m in selected if _direct(targets, n, m)}
            self._wildcard = False
        if not self._selected:
            raise TargetError(f"channel_pruning: targets {targets.to_dict()} select no Conv/Linear layer.")

    def _note(self, names: list[str], reason: str, *, always: bool = False) -> None:
        for name in names:
            if always or (not self._wildcard and name in self._direct):
                self.skipped.setdefault(name, reason)
            else:
                self.untouched.setdefault(name, reason)

    def candidates(self, graph: ChannelGraph, *, first: bool) -> list[_Candidate]:
        if self._selected is None:
            self._select()
        assert self._selected is not None
        config = self.config
        groups = graph.groups()
        has_attention = any(g.attention for g in groups)
        found: list[_Candidate] = []
        in_groups: set[str] = set()
        all_roots = {n for g in groups for n in g.out_layers}
        per_layer = (
            match_per_layer(config.per_layer, sorted(all_roots), field="per_layer", technique="ChannelPruning")
            if config.per_layer else {}
        )
        for group in groups:
            outs = list(group.out_layers)
            in_groups.update(outs)
            targeted = [n for n in outs if n in self._selected]
            if not targeted:
                continue
            root_like = [n for n in outs if isinstance(get_module(self.model, n), ROOT_TYPES)]
            if group.output_coupled:
                if first:
                    self._note(targeted, "its output channels are (added to) the model's output")
                continue
            blocked = [n for n in root_like if n not in self._selected]
            if blocked:
                if first:
                    self._note(targeted, f"coupled with {blocked[0]!r}, which the targets leave out", always=True)
                continue
            if group.embedding and has_attention:
                if first:
                    self._note(targeted, "a transformer's hidden size (shared by the embeddings and every residual "
                                         "connection) is not pruned; prune heads (head_ratio) and FFN neurons instead")
                continue
            key = _group_key(group)
            if group.attention:
                if config.head_ratio <= 0:
                    if first:
                        self.untouched.setdefault(group.attention, "attention heads kept (head_ratio=0)")
                    continue
                found.append(_Candidate(group, "heads", key, config.head_ratio))
                self.original.setdefault(key, int(group.num_heads or 0))
                continue
            own = next((per_layer[n] for n in outs if n in per_layer), None)
            kind = "ffn" if has_attention else "channels"
            if own is None and kind == "ffn" and config.ffn_ratio is not None:
                own = config.ffn_ratio
            if own is None and config.scope == "layer":
                own = config.ratio
            found.append(_Candidate(group, kind, key, own))
            self.original.setdefault(key, group.channels // group.slices)
        if first:
            for name in sorted(self._selected - in_groups):
                module = get_module(self.model, name)
                if isinstance(module, ROOT_TYPES):
                    reason = ("not reached by the example input (unused, or its output is detached)"
                              if not graph.reached(module) else "its output channels cannot be pruned")
                    self._note([name], reason)
        return found

    # -- how many go -----------------------------------------------------------------------

    def _keep_target(self, cand: _Candidate, ratio: float) -> int:
        per0 = self.original[cand.key]
        keep = int(math.floor(per0 * (1.0 - ratio) + 1e-9))
        if cand.kind == "heads":
            keep = per0 - int(round(per0 * ratio))
        else:
            keep = round_keep(keep, per0, self.config.round_to)
        if keep <= 0:
            what = f"head of attention layer {cand.group.attention!r}" if cand.kind == "heads" else (
                f"channel of layer {cand.group.root!r}")
            raise ModelError(
                f"channel_pruning: ratio {ratio:g} would remove every {what} ({per0} -> 0); "
                "lower the ratio (or per_layer / head_ratio)."
            )
        return keep

    def plan(self, graph: ChannelGraph, cands: list[_Candidate], fraction: float, criterion: Any) -> list[tuple[_Candidate, list[int]]]:
        """Indices to remove per candidate for the round reaching `fraction` of the final ratios."""
        config = self.config
        decisions: list[tuple[_Candidate, list[int]]] = []
        pool: list[tuple[_Candidate, torch.Tensor]] = []
        for cand in cands:
            group = cand.group
            imp = graph.importance(group, criterion)
            if imp is None:
                self._note(list(group.out_layers), f"importance {config.importance!r} has no score for this group "
                                                   "(bn_scale needs a BatchNorm in the group)", always=True)
                continue
            if cand.kind == "heads":
                heads = int(group.num_heads or 0)
                keep = self._keep_target(cand, cand.ratio * fraction)  # type: ignore[operator]
                remove = heads - keep
                if remove <= 0:
                    continue
                d = int(group.head_dim or group.channels // max(heads, 1))
                head_scores = imp.reshape(heads, d).mean(dim=1)
                gone = torch.argsort(head_scores)[:remove].tolist()
                idxs = sorted(h * d + j for h in gone for j in range(d))
                decisions.append((cand, idxs))
                continue
            per = group.channels // group.slices
            scores = _slice_scores(imp, group.slices)
            if cand.ratio is not None:
                keep = self._keep_target(cand, cand.ratio * fraction)
                remove = per - keep
                if remove > 0:
                    decisions.append((cand, _indices_for(torch.argsort(scores), remove, per, group.slices)))
            else:
                pool.append((cand, scores))
        if pool:
            decisions.extend(self._global(pool, config.ratio * fraction))
        return decisions

    def _global(self, pool: list[tuple[_Candidate, torch.Tensor]], ratio: float) -> list[tuple[_Candidate, list[int]]]:
        config = self.config
        total0 = sum(self.original[c.key] * c.group.slices for c, _ in pool)
        current = sum(c.group.channels for c, _ in pool)
        target_remove = current - int(math.floor(total0 * (1.0 - ratio) + 1e-9))
        if target_remove <= 0:
            return []
        entries = []
        for gi, (cand, scores) in enumerate(pool):
            for ci, s in enumerate(scores.tolist()):
                entries.append((s, gi, ci))
        entries.sort()
        removed = [0] * len(pool)
        floors = [max(1, math.ceil(self.original[c.key] * (1.0 - config.max_layer_ratio))) for c, _ in pool]
        count = 0
        for _s, gi, _ci in entries:
            if count >= target_remove:
                break
            cand = pool[gi][0]
            per = cand.group.channels // cand.group.slices
            if per - removed[gi] - 1 < floors[gi]:
                continue
            removed[gi] += 1
            count += cand.group.slices
        out = []
        for gi, (cand, scores) in enumerate(pool):
            per = cand.group.channels // cand.group.slices
            keep = round_keep(per - removed[gi], self.original[cand.key], config.round_to)
            keep = min(keep, per)
            remove = per - keep
            if remove > 0:
                out.append((cand, _indices_for(torch.argsort(scores), remove, per, cand.group.slices)))
        return out

    # -- doing it --------------------------------------------------------------------------

    def apply(self, graph: ChannelGraph, decisions: list[tuple[_Candidate, list[int]]]) -> None:
        for cand, idxs in decisions:
            group = cand.group
            record = self.layers.setdefault(cand.key, {
                "layer": group.attention or group.root,
                "kind": cand.kind,
                "before": int(group.num_heads) if cand.kind == "heads" else group.channels,
                "coupled": list(group.out_layers),
            })
            self.ops.extend(graph.prune(group, idxs))
            if cand.kind == "heads":
                attention = get_module(self.model, group.attention or "")
                d = int(group.head_dim or 1)
                heads = int(attention.num_attention_heads) - len(idxs) // d
                attention.num_attention_heads = heads
                self.ops.append({"set": group.attention, "attr": "num_attention_heads", "value": heads})
                if hasattr(attention, "all_head_size"):
                    attention.all_head_size = heads * d
                    self.ops.append({"set": group.attention, "attr": "all_head_size", "value": heads * d})
                record["after"] = heads
            else:
                record["after"] = group.channels - len(idxs)


def _example_input(model: nn.Module, context: Context) -> Any:
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
            if isinstance(inputs, (list, tuple)) and inputs and isinstance(inputs[0], str) and hasattr(model, "tokenize"):
                return dict(model.tokenize(list(inputs[:2])))
            break
    raise ModelError(
        f"channel_pruning needs an example input to trace {type(model).__name__}: pass "
        "Context(example_input=...) or data, or use a built-in model."
    )


def _output_shapes(model: nn.Module, example_input: Any) -> list[tuple[int, ...]]:
    from torchslim.graph.dependency import _flat_tensors

    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            out = call_with(model, example_input)
    finally:
        for m, flag in modes:
            m.training = flag
    return [tuple(t.shape) for t in _flat_tensors(out)]


def _param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _run(model: nn.Module, config: ChannelPruning, *, targets: Targets | None, context: Context,
         example_input: Any = None) -> StepOutcome:
    for name, module in model.named_modules():
        if parametrize.is_parametrized(module):
            raise ModelError(
                f"channel_pruning: layer {name!r} carries parametrizations (masks or quantizers); "
                "prune channels before applying unstructured masks or fake quantization."
            )
    example = example_input if example_input is not None else _example_input(model, context)
    needs_training = config.finetune_epochs > 0
    calib = None
    if config.importance == "taylor":
        data = context.data
        calib = (getattr(data, "calibration", None) or getattr(data, "train", None)) if data is not None else None
        if calib is None:
            raise DataError("channel_pruning with importance='taylor' needs calibration (or train) data for gradients.")
    if needs_training:
        context.require_data("train", technique="channel_pruning")
    params_before = _param_count(model)
    graph = ChannelGraph(model, example)
    shapes_before = graph.output_shapes
    planner = _Planner(model, config, targets, context, example)
    rounds = [1.0] if config.schedule == "one_shot" else [(k + 1) / config.steps for k in range(config.steps)]
    criterion = _criterion(config.importance, normalize=config.scope == "global", seed=context.seed)
    history: list[dict[str, Any]] = []
    from torchslim.pruning._finetune import finetune

    for k, fraction in enumerate(rounds):
        cands = planner.candidates(graph, first=k == 0)
        if config.strict and planner.skipped:
            detail = "; ".join(f"{n}: {r}" for n, r in planner.skipped.items())
            raise TargetError(f"channel_pruning (strict): cannot prune {detail}.")
        if k == 0 and not cands:
            raise TargetError(
                "channel_pruning: no prunable channel group among the targets"
                + (f" ({'; '.join(f'{n}: {r}' for n, r in list({**planner.skipped, **planner.untouched}.items())[:4])})"
                   if planner.skipped or planner.untouched else "") + "."
            )
        if calib is not None:
            _accumulate_gradients(model, calib, config.calibration_batches)
        decisions = planner.plan(graph, cands, fraction, criterion)
        if config.strict and planner.skipped:
            detail = "; ".join(f"{n}: {r}" for n, r in planner.skipped.items())
            raise TargetError(f"channel_pruning (strict): cannot prune {detail}.")
        planner.apply(graph, decisions)
        if calib is not None:
            model.zero_grad(set_to_none=True)
        entry: dict[str, Any] = {"round": k + 1, "fraction": fraction, "groups_cut": len(decisions),
                                 "params": _param_count(model)}
        if needs_training:
            entry["finetune"] = finetune(model, context, technique="channel_pruning", epochs=config.finetune_epochs,
                                         max_steps=config.finetune_max_steps, lr=config.lr,
                                         optimizer=config.optimizer, tag=f"round{k + 1}")
        history.append(entry)
    shapes_after = _output_shapes(model, example)
    if shapes_after != shapes_before:
        raise ModelError(
            f"channel_pruning changed the output shapes of {type(model).__name__} from {shapes_before} to "
            f"{shapes_after}; this model's coupling is not understood, nothing was changed."
        )
    if planner.ops:
        plan = list(getattr(model, "torchslim_plan", []) or [])
        plan.append({"kind": PRUNE_CHANNELS_KIND, "version": 1, "ops": compact_ops(planner.ops)})
        model.torchslim_plan = plan
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
    config = ChannelPruning(ratio=ratio, importance=importance, scope=scope, round_to=round_to,
                            per_layer=per_layer or {}, head_ratio=head_ratio, ffn_ratio=ffn_ratio,
                            max_layer_ratio=max_layer_ratio, strict=strict)
    work = model if inplace else copy.deepcopy(model)
    return _run(work, config, targets=targets, context=Context(data=data, seed=seed), example_input=example_input)


@TECHNIQUES.handles(ChannelPruning)
def channel_pruning(model: nn.Module, config: ChannelPruning, *, targets: Targets | None, context: Context) -> StepOutcome:
    """Handler of :class:`ChannelPruning`: prunes (and fine-tunes) a copy and returns it.

    Any error (bad targets, untraceable model, a layer that would lose every channel, missing data)
    is raised before the caller's model could change: all work happens on a deep copy.
    """
    return _run(copy.deepcopy(model), config, targets=targets, context=context)
