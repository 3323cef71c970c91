"""Which channels structured pruning removes: group selection, per-group or global ranking, rounding.

``scope="layer"`` removes ``n - floor(n (1 - ratio))`` channels of each group;
``scope="global"`` ranks mean-normalised scores of all groups together and removes the lowest
``ratio`` of all channels (no group losing more than ``max_layer_ratio``). ``round_to`` rounds
every kept count to the nearest multiple (at least one multiple). Attention layers lose whole
heads (``head_ratio`` of them, lowest mean score); transformer FFN groups use ``ffn_ratio``; a
transformer's hidden size (shared by the embeddings and every residual connection) is not pruned.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from torchslim.core.context import Context
from torchslim.core.errors import ModelError, TargetError, TorchSlimError
from torchslim.core.targets import Targets
from torchslim.graph import ChannelGraph, ChannelGroup, get_module, root_types, set_heads
from torchslim.pruning._select import _direct, match_per_layer

if TYPE_CHECKING:
    from torchslim.pruning.structured import ChannelPruning


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
class Candidate:
    group: ChannelGroup
    kind: str  # channels | ffn | heads | hidden
    key: frozenset[str]
    ratio: float | None  # own ratio (layer scope / per-layer / ffn); None = in the global pool


def _group_key(group: ChannelGroup) -> frozenset[str]:
    return frozenset(group.out_layers) or frozenset(group.parameters) or frozenset((group.root,))


class GroupBroke(Exception):
    """Cutting one group broke the model (an error inside the cut, or the model no longer runs or its
    output shape changed); `key` names the group, `reason` says what failed and what to exclude."""

    def __init__(self, key: frozenset[str], reason: str) -> None:
        super().__init__(reason)
        self.key = key
        self.reason = reason


def _not_understood(group: ChannelGroup, doing: str, exc: BaseException) -> str:
    """A skip reason for a group whose coupling torchslim does not understand, naming what to exclude."""
    layers = list(group.out_layers) or list(group.parameters) or [group.root]
    shown = ", ".join(repr(n) for n in layers[:4]) + (f" and {len(layers) - 4} more" if len(layers) > 4 else "")
    detail = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
    return (
        f"coupling of {shown} not understood ({doing} failed with {detail}); left unpruned: "
        f"targets: {{exclude: [{', '.join(repr(n) for n in layers[:4])}]}} silences this"
    )


class ChannelPlanner:
    """Decides, round by round, which channels of which coupled groups go, and cuts them.

    ``candidates`` picks the groups the targets allow (and records why others are skipped),
    ``plan`` ranks channels and chooses those to remove for a round, ``apply`` cuts them through
    the graph and collects the JSON operations (``ops``) and per-layer records (``layers``).
    """

    def __init__(
        self, model: nn.Module, config: ChannelPruning, targets: Targets | None, context: Context, example_input: Any
    ) -> None:
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
        self._wildcard = False
        self.avoid: dict[frozenset[str], str] = {}
        """Groups (by key) left whole because cutting them broke the model: the reason, naming the exclude."""
        self.check: Callable[[ChannelGroup], None] | None = None
        """Called after each group is cut (raises :class:`GroupBroke` when the model no longer runs)."""

    # -- which groups ----------------------------------------------------------------------

    def _select(self) -> None:
        targets = self.targets or Targets()
        wildcard = not targets.names and not targets.types
        if wildcard:
            candidates = [n for n, m in self.model.named_modules() if n and isinstance(m, root_types(self.model))]
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

    def candidates(self, graph: ChannelGraph, *, first: bool) -> list[Candidate]:
        """The prunable groups among the targets; on the `first` call, note why the others are left alone."""
        if self._selected is None:
            self._select()
        groups = graph.groups()
        has_attention = any(g.attention for g in groups) or any(
            "Attention" in type(m).__name__ for m in self.model.modules()
        )
        all_roots = {n for g in groups for n in g.out_layers}
        per_layer = (
            match_per_layer(self.config.per_layer, sorted(all_roots), field="per_layer", technique="ChannelPruning")
            if self.config.per_layer
            else {}
        )
        assert self._selected is not None
        if first:
            for name, reason in graph.search_skipped.items():
                if name in self._selected:
                    self._note([name], reason, always=True)
        found: list[Candidate] = []
        in_groups: set[str] = set()
        for group in groups:
            in_groups.update(group.out_layers)
            cand = self._candidate(group, has_attention=has_attention, per_layer=per_layer, first=first)
            if cand is not None:
                found.append(cand)
        if first:
            self._note_outside(graph, in_groups)
        return found

    def _candidate(
        self, group: ChannelGroup, *, has_attention: bool, per_layer: dict[str, float], first: bool
    ) -> Candidate | None:
        assert self._selected is not None
        config = self.config
        outs = list(group.out_layers)
        targeted = [n for n in outs if n in self._selected]
        if not targeted:
            return None
        root_like = [n for n in outs if isinstance(get_module(self.model, n), root_types(self.model))]
        if group.output_coupled:
            if first:
                self._note(targeted, "its output channels are (added to) the model's output")
            return None
        blocked = [n for n in root_like if n not in self._selected]
        if blocked:
            if first:
                self._note(targeted, f"coupled with {blocked[0]!r}, which the targets leave out", always=True)
            return None
        key = _group_key(group)
        if key in self.avoid:
            if first:
                self._note(targeted, self.avoid[key], always=True)
            return None
        if group.embedding and has_attention:
            if config.hidden_ratio > 0:
                self.original.setdefault(key, group.channels // group.slices)
                return Candidate(group, "hidden", key, config.hidden_ratio)
            if first:
                self._note(
                    targeted,
                    "a transformer's hidden size (shared by the embeddings and every residual "
                    "connection) is kept (hidden_ratio=0); heads (head_ratio) and FFN neurons are pruned",
                )
            return None
        if group.attention:
            if config.head_ratio <= 0:
                if first:
                    self.untouched.setdefault(group.attention, "attention heads kept (head_ratio=0)")
                return None
            self.original.setdefault(key, int(group.num_heads or 0))
            return Candidate(group, "heads", key, config.head_ratio)
        own = next((per_layer[n] for n in outs if n in per_layer), None)
        kind = "ffn" if has_attention else "channels"
        if own is None and kind == "ffn" and config.ffn_ratio is not None:
            own = config.ffn_ratio
        if own is None and config.scope == "layer":
            own = config.ratio
        self.original.setdefault(key, group.channels // group.slices)
        return Candidate(group, kind, key, own)

    def _note_outside(self, graph: ChannelGraph, in_groups: set[str]) -> None:
        assert self._selected is not None
        for name in sorted(self._selected - in_groups):
            module = get_module(self.model, name)
            if isinstance(module, root_types(self.model)):
                reason = (
                    "not reached by the example input (unused, or its output is detached)"
                    if not graph.reached(module)
                    else "its output channels cannot be pruned"
                )
                self._note([name], reason)

    # -- how many go -----------------------------------------------------------------------

    def _keep_target(self, cand: Candidate, ratio: float) -> int:
        per0 = self.original[cand.key]
        keep = int(math.floor(per0 * (1.0 - ratio) + 1e-9))
        if cand.kind == "heads":
            keep = per0 - int(round(per0 * ratio))
        else:
            keep = round_keep(keep, per0, self.config.round_to)
        if keep <= 0:
            what = (
                f"head of attention layer {cand.group.attention!r}"
                if cand.kind == "heads"
                else (f"channel of layer {cand.group.root!r}")
            )
            raise ModelError(
                f"channel_pruning: ratio {ratio:g} would remove every {what} ({per0} -> 0); "
                "lower the ratio (or per_layer / head_ratio)."
            )
        return keep

    def plan(
        self, graph: ChannelGraph, cands: list[Candidate], fraction: float, criterion: Any
    ) -> list[tuple[Candidate, list[int]]]:
        """Indices to remove per candidate for the round reaching `fraction` of the final ratios."""
        config = self.config
        decisions: list[tuple[Candidate, list[int]]] = []
        pool: list[tuple[Candidate, torch.Tensor]] = []
        for cand in cands:
            group = cand.group
            try:
                imp = graph.importance(group, criterion)
            except Exception as exc:  # noqa: BLE001 - a score Torch-Pruning cannot compute skips the group
                self._note(list(group.out_layers), _not_understood(group, "scoring it", exc), always=True)
                continue
            if imp is None:
                self._note(
                    list(group.out_layers),
                    f"importance {config.importance!r} has no score for this group "
                    "(bn_scale needs a BatchNorm in the group)",
                    always=True,
                )
                continue
            if cand.kind == "heads":
                heads = int(group.num_heads or 0)
                assert cand.ratio is not None  # a heads candidate always carries head_ratio
                keep = self._keep_target(cand, cand.ratio * fraction)
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

    def _global(self, pool: list[tuple[Candidate, torch.Tensor]], ratio: float) -> list[tuple[Candidate, list[int]]]:
        config = self.config
        total0 = sum(self.original[c.key] * c.group.slices for c, _ in pool)
        current = sum(c.group.channels for c, _ in pool)
        target_remove = current - int(math.floor(total0 * (1.0 - ratio) + 1e-9))
        if target_remove <= 0:
            return []
        entries = []
        for gi, (_cand, scores) in enumerate(pool):
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

    def apply(self, graph: ChannelGraph, decisions: list[tuple[Candidate, list[int]]]) -> None:
        for cand, idxs in decisions:
            group = cand.group
            record = self.layers.setdefault(
                cand.key,
                {
                    "layer": group.attention or group.root,
                    "kind": cand.kind,
                    "before": int(group.num_heads or 0) if cand.kind == "heads" else group.channels,
                    "coupled": list(group.out_layers),
                },
            )
            try:
                self.ops.extend(graph.prune(group, idxs))
            except ModelError as exc:  # a coupled member would lose every channel: checked before any cut
                raise GroupBroke(cand.key, _not_understood(group, "cutting it", exc)) from exc
            except TorchSlimError:
                raise
            except Exception as exc:  # noqa: BLE001 - the cut failed half-way: the caller retries without it
                raise GroupBroke(cand.key, _not_understood(group, "cutting it", exc)) from exc
            if cand.kind == "heads":
                attention = get_module(self.model, group.attention or "")
                d = int(group.head_dim or 1)
                heads = int(group.num_heads or 0) - len(idxs) // d
                self.ops.extend(set_heads(attention, group.attention or "", heads, d))
                record["after"] = heads
            else:
                record["after"] = group.channels - len(idxs)
            if self.check is not None:
                try:
                    self.check(group)
                except Exception as exc:  # noqa: BLE001 - the model no longer runs: the caller retries without it
                    raise GroupBroke(
                        cand.key, _not_understood(group, "running the model after cutting it", exc)
                    ) from exc
