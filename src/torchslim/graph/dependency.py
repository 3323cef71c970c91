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
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal, cast

import torch
from torch import nn

from torchslim.core.errors import ModelError
from torchslim.graph.channel_ops import _tp
from torchslim.graph.surgery import call_with, module_names

ROOT_TYPES: tuple[type[nn.Module], ...] = (nn.modules.conv._ConvNd, nn.Linear)
"""Layer types whose output channels start a group (the layers channel pruning shrinks)."""


@dataclasses.dataclass(frozen=True)
class GroupMember:
    """One layer of a group: its name, which dimension the group cuts (``out`` or ``in``), its type
    and its current size along that dimension."""

    name: str
    kind: Literal["out", "in"]
    type: str
    channels: int | None


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
        return tuple(m.name for m in self.members if m.kind == "out")

    @property
    def in_layers(self) -> tuple[str, ...]:
        """Names of the member layers whose input channels the group removes."""
        return tuple(m.name for m in self.members if m.kind == "in")

    @property
    def layers(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(m.name for m in self.members))

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
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict) or hasattr(value, "values") and callable(value.values):
        return [t for v in value.values() for t in flat_tensors(v)]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in flat_tensors(v)]
    return []


def _attention_layers(model: nn.Module) -> dict[int, tuple[str, nn.Module]]:
    """``id(projection) -> (attention name, attention module)`` for query/key/value projections of
    attention modules that keep a head count (Hugging Face ``*SelfAttention`` style)."""
    found: dict[int, tuple[str, nn.Module]] = {}
    for name, module in model.named_modules():
        heads = getattr(module, "num_attention_heads", None)
        if not isinstance(heads, int):
            continue
        for proj in ("query", "key", "value"):
            child = getattr(module, proj, None)
            if isinstance(child, nn.Linear):
                found[id(child)] = (name, module)
    return found


def heads_of(attention: nn.Module) -> int:
    """The head count of an attention module (``num_attention_heads``, Hugging Face style)."""
    return int(cast(int, attention.num_attention_heads))


def head_dim_of(attention: nn.Module) -> int:
    size = getattr(attention, "attention_head_size", None)
    if isinstance(size, int) and size > 0:
        return size
    query = cast(nn.Linear, attention.query)
    return query.out_features // heads_of(attention)


class ChannelGraph:
    """The coupled-channel structure of `model`, traced once with `example_input`.

    `example_input` is what the model is called with: a tensor, a tuple of positional inputs or a
    mapping of keyword inputs (e.g. ``{"input_ids", "attention_mask"}``). `forward_fn(model,
    example_input)` overrides the call. Raises :class:`ModelError` when the model cannot be run
    or traced (its output does not depend on its parameters through autograd).

    The graph stays valid while its groups are pruned through :meth:`prune`; other structural
    changes to the model need a new graph.
    """

    def __init__(
        self,
        model: nn.Module,
        example_input: Any,
        *,
        forward_fn: Callable[[nn.Module, Any], Any] | None = None,
    ) -> None:
        tp = _tp()
        self.model = model
        self.example_input = example_input
        self._forward_fn = forward_fn
        label = type(model).__name__
        with _tracing_state(model):
            model.eval()
            ran: list[nn.Module] = []
            hooks = [
                m.register_forward_hook(lambda mod, _i, _o: ran.append(mod))
                for m in model.modules()
                if isinstance(m, ROOT_TYPES)
            ]
            try:
                with torch.enable_grad():
                    out = forward_fn(model, example_input) if forward_fn else call_with(model, example_input)
            except Exception as exc:  # noqa: BLE001 - any failure of the user's forward is reported
                raise ModelError(
                    f"{label} cannot be traced: calling it on the example input failed with {type(exc).__name__}: {exc}"
                ) from exc
            finally:
                for h in hooks:
                    h.remove()
            tensors = flat_tensors(out)
            if not tensors or all(t.grad_fn is None for t in tensors):
                raise ModelError(
                    f"{label} cannot be traced: its output does not depend on its parameters through "
                    "autograd (a forward under torch.no_grad, .detach(), numpy or integer-only outputs)."
                )
            self.output_shapes = [tuple(t.shape) for t in tensors]
            self._ran = {id(m) for m in ran}
            try:
                self.dg = tp.DependencyGraph().build_dependency(
                    model,
                    example_inputs=example_input,
                    forward_fn=forward_fn or call_with,
                    verbose=False,
                )
            except Exception as exc:  # noqa: BLE001
                raise ModelError(
                    f"{label} cannot be traced by the dependency graph: {type(exc).__name__}: {exc}"
                ) from exc
        self._names = module_names(model)
        self._order = {name: i for i, (name, _) in enumerate(model.named_modules())}
        self._root_names = {name for name, m in model.named_modules() if isinstance(m, ROOT_TYPES)}
        self._attention = _attention_layers(model)

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

    def groups(self, *, root_types: Sequence[type[nn.Module]] = ROOT_TYPES) -> list[ChannelGroup]:
        """Every group rooted at a layer of `root_types`, each listed once, in model order."""
        out = []
        for tp_group in self.dg.get_all_groups(ignored_layers=[], root_module_types=tuple(root_types)):
            out.append(self._describe(tp_group))
        out.sort(key=lambda g: self._order.get(g.root, len(self._order)))
        return out

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
