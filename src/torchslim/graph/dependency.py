"""Coupled channel groups: torchslim's thin API over Torch-Pruning's `DependencyGraph`.

Removing output channel ``c`` of a layer also removes input channel ``c`` of every layer that
reads it, the matching BatchNorm / LayerNorm entries, and, through residual additions and
concatenations, the channels of every other layer whose output is added to (or concatenated
with) it. Fang et al. 2023 ("DepGraph: Towards any structural pruning", CVPR) model this as a
dependency graph traced through autograd; a *group* is the set of ``(layer, in|out dimension,
indices)`` that must be pruned together. :class:`ChannelGraph` traces a model once and hands
out :class:`ChannelGroup` records that name every coupled layer, say whether the group reaches
the model's output (and must not be pruned), whether it spans the query/key/value projections
of an attention layer (prunable only by whole heads), and how many equal slices grouped
convolutions force.

`ChannelGraph.prune` removes channels physically and returns the operations it applied as plain
JSON, which :func:`torchslim.graph.channel_ops.apply_channel_ops` replays on a freshly built model
(how an artifact rebuilds a pruned architecture before loading its weights).
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal

import torch
from torch import nn

from torchslim.core.errors import ModelError
from torchslim.graph.adapters import (
    SearchTimeout,
    _tp,
    custom_pruners,
    deadline,
    failing_op,
    no_cache_input,
    root_types,
    tensor_outputs,
    tolerant_concat_sizes,
    without_cache,
)
from torchslim.graph.attention import (
    attention_layers,
    grouped_query_projections,
    head_dim_of,
    heads_of,
    projections,
)
from torchslim.graph.surgery import call_with, module_names

SEARCH_TIME_LIMIT_S = 300.0
"""Default time limit of the dependency search (tracing plus grouping), in seconds."""

ROOT_TIME_LIMIT_S = 10.0
"""Default time limit of the coupling search from one root layer, in seconds; a root past it is
left unpruned (Torch-Pruning's search can blow up on grouped-query attention's repeat of the
key/value heads)."""


@dataclasses.dataclass(frozen=True)
class GroupMember:
    """One layer of a group: its name, which dimension the group cuts (``out`` or ``in``), its type
    and its current size along that dimension."""

    name: str
    kind: Literal["out", "in"]
    type: str
    channels: int | None

    @property
    def is_parameter(self) -> bool:
        """A bare ``nn.Parameter`` (position embedding, class token, layer scale), not a layer."""
        return self.type == "Parameter"


@dataclasses.dataclass
class ChannelGroup:
    """A set of coupled channels that can only be removed together.

    Attributes:
        root: the group's first output layer in model order (channel ``i`` of the group is
            output channel ``i`` of `root`).
        channels: current number of channels.
        members: every layer (and unwrapped parameter) the group cuts.
        output_coupled: the channels are (or are added to) the model's output; pruning would
            change the output shape, so the group is never pruned.
        slices: grouped convolutions / GroupNorm split the channels into this many equal slices;
            the same number of channels must go from each.
        attention: name of the attention module whose query/key/value projections belong to the
            group (only whole heads can go), else None.
        num_heads, head_dim: of that attention module.
        embedding: the group includes an embedding table (a transformer's hidden size).
    """

    root: str
    channels: int
    members: tuple[GroupMember, ...]
    output_coupled: bool = False
    slices: int = 1
    attention: str | None = None
    num_heads: int | None = None
    head_dim: int | None = None
    embedding: bool = False
    _tp_group: Any = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def out_layers(self) -> tuple[str, ...]:
        """Names of the member layers whose output channels the group removes."""
        return tuple(m.name for m in self.members if m.kind == "out" and not m.is_parameter)

    @property
    def in_layers(self) -> tuple[str, ...]:
        """Names of the member layers whose input channels the group removes."""
        return tuple(m.name for m in self.members if m.kind == "in" and not m.is_parameter)

    @property
    def layers(self) -> tuple[str, ...]:
        """Names of the member layers (modules; bare parameters are in :attr:`parameters`)."""
        return tuple(dict.fromkeys(m.name for m in self.members if not m.is_parameter))

    @property
    def parameters(self) -> tuple[str, ...]:
        """Qualified names of the bare parameters the group cuts (Torch-Pruning's unwrapped parameters)."""
        return tuple(dict.fromkeys(m.name for m in self.members if m.is_parameter))

    def to_dict(self) -> dict[str, Any]:
        return {
            "root": self.root,
            "channels": self.channels,
            "out_layers": list(self.out_layers),
            "in_layers": list(self.in_layers),
            "output_coupled": self.output_coupled,
            "slices": self.slices,
            "attention": self.attention,
            "num_heads": self.num_heads,
            "embedding": self.embedding,
            "parameters": list(self.parameters),
        }


@contextlib.contextmanager
def _tracing_state(model: nn.Module) -> Iterator[None]:
    """Grad enabled, every parameter requiring grad, modes restored afterwards."""
    modes = [(m, m.training) for m in model.modules()]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(True)
        with torch.enable_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        for m, flag in modes:
            m.training = flag


def flat_tensors(value: Any) -> list[torch.Tensor]:
    """Every tensor in a model output (tensor, mapping, list or tuple, nested), in order."""
    return tensor_outputs(value)


def _role(name: str) -> str:
    """`name` with block indices generalised, as a `Targets` regex (``layers.3.attn.v`` ->
    ``layers\\.\\d+\\.attn\\.v``): the same layer in every block."""
    return r"\.".join(r"\d+" if part.isdigit() else re.escape(part) for part in name.split("."))


class ChannelGraph:
    """The coupled-channel structure of `model`, traced once with `example_input`.

    `example_input` is what the model is called with: a tensor, a tuple of positional inputs or a
    mapping of keyword inputs (e.g. ``{"input_ids", "attention_mask"}``). `forward_fn(model,
    example_input)` overrides the call. Raises :class:`ModelError` when the model cannot be run
    or traced (its output does not depend on its parameters through autograd). A Hugging Face
    model is traced with ``use_cache`` off (said in :attr:`notes`). `time_limit` bounds tracing and
    the whole group search, `root_time_limit` the search from one root layer (that root is then
    left out, see :meth:`groups`); `search_skipped` (shared, updated) carries roots known to be
    slow from an earlier graph of the same model.

    The graph stays valid while its groups are pruned through :meth:`prune`; other structural
    changes to the model need a new graph.
    """

    def __init__(
        self,
        model: nn.Module,
        example_input: Any,
        *,
        forward_fn: Callable[[nn.Module, Any], Any] | None = None,
        time_limit: float | None = SEARCH_TIME_LIMIT_S,
        root_time_limit: float | None = ROOT_TIME_LIMIT_S,
        search_skipped: dict[str, str] | None = None,
    ) -> None:
        self.model = model
        self.root_time_limit = root_time_limit
        self.search_skipped: dict[str, str] = search_skipped if search_skipped is not None else {}
        for name, reason in grouped_query_projections(model).items():
            self.search_skipped.setdefault(name, reason)
        self._slow_roles: dict[str, str] = {}
        """Root layers whose coupling search ran over `root_time_limit`: the reason, naming the exclude."""
        self.example_input = no_cache_input(example_input)
        self._forward_fn = forward_fn
        self.time_limit = time_limit
        self.types = root_types(model)
        self.notes: list[str] = []
        with _tracing_state(model), without_cache(model) as cache_was_on:
            model.eval()
            if cache_was_on:
                self.notes.append("use_cache turned off for tracing (a key/value cache output cannot be traced)")
            tensors = self._run_example(model)
            self.output_shapes = [tuple(t.shape) for t in tensors]
            self._build(model)
        self._names = module_names(model)
        self._order = {name: i for i, (name, _) in enumerate(model.named_modules())}
        self._root_names = {name for name, m in model.named_modules() if isinstance(m, self.types)}
        self._attention = attention_layers(model)

    def _call(self, model: nn.Module, example_input: Any) -> Any:
        return self._forward_fn(model, example_input) if self._forward_fn else call_with(model, example_input)

    def _run_example(self, model: nn.Module) -> list[torch.Tensor]:
        label = type(model).__name__
        ran: list[nn.Module] = []
        hooks = [
            m.register_forward_hook(lambda mod, _i, _o: ran.append(mod))
            for m in model.modules()
            if isinstance(m, self.types)
        ]
        try:
            with torch.enable_grad():
                out = self._call(model, self.example_input)
        except Exception as exc:  # noqa: BLE001 - any failure of the user's forward is reported
            raise ModelError(
                f"{label} cannot be traced: calling it on the example input failed with {type(exc).__name__}: {exc}"
            ) from exc
        finally:
            for h in hooks:
                h.remove()
        self._ran = {id(m) for m in ran}
        tensors = flat_tensors(out)
        if not tensors or all(t.grad_fn is None for t in tensors):
            raise ModelError(
                f"{label} cannot be traced: its output does not depend on its parameters through "
                "autograd (a forward under torch.no_grad, .detach(), numpy or integer-only outputs)."
            )
        return tensors

    def _build(self, model: nn.Module) -> None:
        tp = _tp()
        label = type(model).__name__
        unmapped: list[str] = []
        try:
            with deadline(self.time_limit), tolerant_concat_sizes(unmapped):
                self.dg = tp.DependencyGraph().build_dependency(
                    model,
                    example_inputs=self.example_input,
                    forward_fn=self._call,
                    customized_pruners=custom_pruners(model) or None,
                    verbose=False,
                )
        except SearchTimeout:
            raise ModelError(
                f"{label}: tracing the dependency graph took over {self.time_limit:g} s; "
                "pass a larger time_limit or prune part of the model (targets)."
            ) from None
        except Exception as exc:  # noqa: BLE001
            raise ModelError(
                f"{label} cannot be traced by the dependency graph{failing_op(exc, model)}: "
                f"{type(exc).__name__}: {exc}; "
                "no channel of it can be pruned, nothing was changed"
            ) from exc
        if unmapped:
            self.notes.append(
                f"{', '.join(unmapped)}: input sizes not inferred, inputs coupled index by index "
                "(a concatenation along a non-channel dimension, e.g. a class token)"
            )

    # -- introspection -------------------------------------------------------------------------

    def name_of(self, module: Any) -> str | None:
        if isinstance(module, nn.Parameter):
            return self.dg._param_to_name.get(module)
        return self._names.get(id(module))

    def reached(self, module: nn.Module) -> bool:
        """Whether `module` lies on an autograd path to the model's output."""
        return module in self.dg.module2node

    def ran(self, module: nn.Module) -> bool:
        """Whether `module` was called by the example forward."""
        return id(module) in self._ran

    def _member(self, dep: Any) -> GroupMember | None:
        target = dep.target.module
        name = self.name_of(target)
        if name is None:
            return None
        kind: Literal["out", "in"] = "out" if self.dg.is_out_channel_pruning_fn(dep.handler) else "in"
        if isinstance(target, nn.Parameter):
            channels = int(target.shape[dep.target.pruning_dim])
            type_name = "Parameter"
        else:
            getter = self.dg.get_out_channels if kind == "out" else self.dg.get_in_channels
            try:
                channels = getter(target)
            except Exception:  # noqa: BLE001 - informational only
                channels = None
            type_name = type(target).__name__
        return GroupMember(name=name, kind=kind, type=type_name, channels=channels)

    def _describe(self, tp_group: Any) -> ChannelGroup:
        tp = _tp()
        OPTYPE = tp.ops.OPTYPE
        root_module = tp_group[0].dep.target.module
        members: list[GroupMember] = []
        seen: set[tuple[str, str]] = set()
        output_coupled = False
        slices = 1
        attention: tuple[str, nn.Module] | None = None
        embedding = False
        for dep, _ in tp_group:
            node = dep.target
            is_out = self.dg.is_out_channel_pruning_fn(dep.handler)
            if node.type == OPTYPE.OUTPUT:
                output_coupled = True
            module = node.module
            if is_out and isinstance(module, nn.Module) and not node.outputs and node.type != OPTYPE.OUTPUT:
                # a sink: this layer's output is the model's output
                output_coupled = True
            if (
                isinstance(module, nn.modules.conv._ConvNd)
                and module.groups > 1
                and module.groups != module.out_channels
            ):
                slices = max(slices, module.groups)
            if isinstance(module, nn.GroupNorm):
                slices = max(slices, module.num_groups)
            if isinstance(module, nn.Embedding):
                embedding = True
            if is_out and isinstance(module, nn.Module) and id(module) in self._attention:
                attention = self._attention[id(module)]
            member = self._member(dep)
            if member is not None and (member.name, member.kind) not in seen:
                seen.add((member.name, member.kind))
                members.append(member)
        root = self.name_of(root_module) or "?"
        # name the group after its first output layer in model order (stable across re-tracing)
        candidates = [m.name for m in members if m.kind == "out" and m.name in self._root_names]
        if candidates:
            root = min(candidates, key=lambda n: self._order.get(n, len(self._order)))
        channels = int(self.dg.get_out_channels(root_module))
        group = ChannelGroup(
            root=root,
            channels=channels,
            members=tuple(members),
            output_coupled=output_coupled,
            slices=slices,
            embedding=embedding,
            _tp_group=tp_group,
        )
        if attention is not None:
            group.attention = attention[0]
            group.num_heads = heads_of(attention[1])
            group.head_dim = head_dim_of(attention[1])
        return group

    def groups(self, *, root_types: Sequence[type[nn.Module]] | None = None) -> list[ChannelGroup]:
        """Every group rooted at a layer of `root_types` (default: conv, linear and ``Conv1D``), each
        listed once, in model order.

        A root whose coupling search alone runs past ``root_time_limit`` is left out and named in
        :attr:`search_skipped` (with the exclude that avoids the search); past the graph's
        `time_limit` in all, :class:`ModelError` names the layer the search was on.
        """
        types = tuple(root_types) if root_types is not None else self.types
        out = []
        end = time.monotonic() + (self.time_limit if self.time_limit is not None else float("inf"))
        for tp_group in self._tp_groups(types, end):
            out.append(self._describe(tp_group))
        out.sort(key=lambda g: self._order.get(g.root, len(self._order)))
        return out

    def _siblings(self, name: str) -> list[str]:
        """The other query/key/value projections of the attention layer that `name` belongs to."""
        parent, _, _ = name.rpartition(".")
        try:
            qkv = projections(self.model.get_submodule(parent)) if parent else None
        except AttributeError:
            qkv = None
        return [n for n in (self.name_of(p) for p in qkv or ()) if n and n != name]

    def _tp_groups(self, types: tuple[type[nn.Module], ...], end: float) -> Iterator[Any]:
        """Torch-Pruning's ``get_all_groups``, with a time limit per root and in all."""
        dg = self.dg
        visited: set[int] = set()
        for m in list(dg.module2node.keys()):
            if not isinstance(m, types) or id(m) in visited or m in dg.IGNORED_LAYERS_IN_TRACING:
                continue
            pruner = dg.get_pruner_of_module(m)
            if pruner is None or pruner.get_out_channels(m) is None:
                continue
            name = self.name_of(m) or type(m).__name__
            left = end - time.monotonic()
            role = _role(name)
            if role in self._slow_roles and name not in self.search_skipped:
                self.search_skipped[name] = self._slow_roles[role]
            if left <= 0 or name in self.search_skipped:
                if left <= 0:
                    raise ModelError(
                        f"channel_pruning: the dependency search ran over its time limit ({self.time_limit:g} s) "
                        f"at layer {name!r}; exclude it (targets: {{exclude: [{name!r}]}}) or raise time_limit."
                    )
                continue
            limit = min(left, self.root_time_limit) if self.root_time_limit else left
            try:
                with deadline(limit):
                    group = dg.get_pruning_group(m, pruner.prune_out_channels, list(range(pruner.get_out_channels(m))))
            except SearchTimeout:
                self.search_skipped[name] = (
                    f"its coupling search ran over {limit:.3g} s; left unpruned: "
                    f"targets: {{exclude: [{name!r}]}} skips the search"
                )
                for sibling in [name, *self._siblings(name)]:
                    self._slow_roles.setdefault(
                        _role(sibling),
                        f"the coupling search of {name!r} (the same attention projections in another block, or "
                        f"a sibling projection) ran over {limit:.3g} s; left unpruned: "
                        f"targets: {{exclude: ['re:{_role(sibling)}']}} skips the search",
                    )
                continue
            for dep, _ in group:
                if dg.is_out_channel_pruning_fn(dep.handler):
                    visited.add(id(dep.target.module))
            yield group

    # -- pruning -------------------------------------------------------------------------------

    def importance(self, group: ChannelGroup, criterion: Callable[[Any], torch.Tensor | None]) -> torch.Tensor | None:
        """Per-channel scores of `group` from a Torch-Pruning importance (``criterion(tp_group)``)."""
        imp = criterion(group._tp_group)
        return None if imp is None else imp.detach().float().cpu().reshape(-1)

    def prune(self, group: ChannelGroup, indices: Sequence[int]) -> list[dict[str, Any]]:
        """Remove channels `indices` (of the group root's output) from every member of `group`.

        Returns the applied operations as JSON (see :func:`apply_channel_ops`). Raises
        :class:`ModelError` naming the layer when the cut would leave a layer without channels.
        """
        idxs = sorted({int(i) for i in indices})
        if not idxs:
            return []
        if idxs[0] < 0 or idxs[-1] >= group.channels:
            raise ModelError(f"Channel indices for {group.root!r} must lie in [0, {group.channels}), got {idxs[-1]}.")
        root_dep = group._tp_group[0].dep
        tp_group = self.dg.get_pruning_group(root_dep.target.module, root_dep.handler, idxs)
        for dep, dep_idxs in tp_group:
            member = self._member(dep)
            if member is None or member.channels is None:
                continue
            if len(set(dep_idxs)) >= member.channels:
                raise ModelError(
                    f"Pruning would remove every {member.kind}put channel of layer {member.name!r} "
                    f"({member.channels} channels); keep at least one."
                )
        ops: list[dict[str, Any]] = []
        for dep, dep_idxs in tp_group:
            target = dep.target.module
            name = self.name_of(target)
            if name is None:
                continue  # a graph-only op (add, concat, reshape): nothing stored to change
            plain = sorted(int(i) for i in dep_idxs)
            if isinstance(target, nn.Parameter):
                ops.append({"param": name, "dim": int(dep.target.pruning_dim), "idxs": plain})
            else:
                pruner = dep.handler.__self__
                fn = "out" if dep.handler.__name__ == "prune_out_channels" else "in"
                ops.append(
                    {
                        "module": name,
                        "pruner": type(pruner).__name__,
                        "fn": fn,
                        "dim": int(dep.target.pruning_dim),
                        "idxs": plain,
                    }
                )
        tp_group.prune()
        return ops
