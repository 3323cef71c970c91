"""Channel cuts as plain JSON, and their replay: how a pruned architecture is rebuilt.

:meth:`torchslim.graph.ChannelGraph.prune` returns the operations it applied (one record per cut
layer or parameter, plus head-count attributes it set); :func:`compact_ops` merges them into the
records a ``prune_channels`` plan entry stores, and :func:`apply_channel_ops` redoes them on a
freshly built model. The replay of ``prune_channels`` plan entries is registered here with
:func:`torchslim.core.plans.register_plan_replay`, so loading an artifact rebuilds the smaller
architecture before the weights are loaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from torchslim.core.errors import ModelError
from torchslim.core.plans import register_plan_replay
from torchslim.graph.adapters import replay_pruners
from torchslim.graph.surgery import get_module, retie, select_dim, tied_parameters

PRUNE_CHANNELS_KIND = "prune_channels"
"""Kind of the plan entry that records a channel cut (``{"kind", "version", "ops"}``)."""

SETTABLE_ATTRS = frozenset(
    {
        "num_attention_heads",
        "all_head_size",
        "attention_head_size",
        "num_heads",
        "n_heads",
        "inner_dim",
        "head_dim",
        "embed_dim",
    }
)
"""Integer module attributes a replayed plan may set (head counts of attention layers)."""


def _pruners() -> dict[str, Any]:
    return replay_pruners()


def encode_indices(idxs: Sequence[int]) -> str:
    """Sorted indices as a compact range string: ``[0, 1, 2, 5, 7, 8] -> "0-2,5,7-8"``."""
    values = sorted({int(i) for i in idxs})
    parts: list[str] = []
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[j] + 1:
            j += 1
        parts.append(str(values[i]) if i == j else f"{values[i]}-{values[j]}")
        i = j + 1
    return ",".join(parts)


def decode_indices(value: Any) -> list[int]:
    """Inverse of :func:`encode_indices`; a plain list of ints is accepted too."""
    if isinstance(value, (list, tuple)):
        return [int(v) for v in value]
    if not isinstance(value, str):
        raise ModelError(f"Channel indices must be a list or a range string, got {type(value).__name__}.")
    out: list[int] = []
    for part in filter(None, value.split(",")):
        lo, sep, hi = part.partition("-")
        try:
            out.extend(range(int(lo), int(hi) + 1) if sep else [int(lo)])
        except ValueError:
            raise ModelError(f"Bad channel index range {part!r}.") from None
    return out


def compact_ops(ops: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Merge consecutive layer cuts that share their indices into ``{"cut": [[module, pruner, fn,
    dim], ...], "idxs": "ranges"}`` records (what plans store; :func:`apply_channel_ops` reads both)."""
    out: list[dict[str, Any]] = []
    for op in ops:
        if "module" in op:
            idxs = encode_indices(decode_indices(op["idxs"]))
            member = [op["module"], op["pruner"], op["fn"], int(op.get("dim", -1))]
            if out and "cut" in out[-1] and out[-1]["idxs"] == idxs:
                out[-1]["cut"].append(member)
            else:
                out.append({"cut": [member], "idxs": idxs})
        elif "param" in op:
            out.append({**op, "idxs": encode_indices(decode_indices(op["idxs"]))})
        else:
            out.append(dict(op))
    return out


def _expand(ops: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    flat: list[dict[str, Any]] = []
    for i, op in enumerate(ops):
        if not isinstance(op, dict):
            raise ModelError(f"Channel op {i} must be a mapping, got {type(op).__name__}.")
        if "cut" in op:
            for member in op["cut"]:
                if not isinstance(member, (list, tuple)) or len(member) != 4:
                    raise ModelError(f"Channel op {i}: bad cut entry {member!r}.")
                name, pruner, fn, dim = member
                flat.append({"module": name, "pruner": pruner, "fn": fn, "dim": dim, "idxs": op.get("idxs", [])})
        else:
            flat.append(op)
    return flat


def apply_channel_ops(model: nn.Module, ops: Sequence[dict[str, Any]]) -> nn.Module:
    """Replay operations recorded by :meth:`ChannelGraph.prune` on `model` (in place; returned).

    Each op is ``{"module", "pruner", "fn": "out"|"in", "dim", "idxs"}`` (cut a layer),
    ``{"cut": [[module, pruner, fn, dim], ...], "idxs"}`` (several layers, same indices; see
    :func:`compact_ops`), ``{"param", "dim", "idxs"}`` (cut an unwrapped parameter) or
    ``{"set", "attr", "value"}`` (set an integer head-count attribute from :data:`SETTABLE_ATTRS`).
    ``idxs`` is a list or a range string (:func:`encode_indices`). Raises :class:`ModelError` naming
    the layer when an op does not fit the model.
    """
    pruners = _pruners()
    ties = tied_parameters(model)
    for i, op in enumerate(_expand(ops)):
        if "set" in op:
            attr, value = op.get("attr"), op.get("value")
            if attr not in SETTABLE_ATTRS or isinstance(value, bool) or not isinstance(value, int):
                raise ModelError(f"Channel op {i}: cannot set {attr!r}={value!r} on layer {op['set']!r}.")
            module = get_module(model, str(op["set"]))
            if not hasattr(module, attr):
                raise ModelError(f"Channel op {i}: layer {op['set']!r} has no attribute {attr!r}.")
            setattr(module, attr, value)
            continue
        idxs = decode_indices(op.get("idxs", []))
        if "param" in op:
            name = str(op["param"])
            owner_name, _, pname = name.rpartition(".")
            owner = get_module(model, owner_name)
            param = getattr(owner, pname, None)
            if not isinstance(param, torch.Tensor):
                raise ModelError(f"Channel op {i}: {name!r} is not a parameter of the model.")
            dim = int(op["dim"])
            size = param.shape[dim]
            _check_idxs(idxs, size, f"parameter {name!r}", i)
            gone = set(idxs)
            keep = [k for k in range(size) if k not in gone]
            setattr(owner, pname, nn.Parameter(select_dim(param.data, dim, keep), requires_grad=param.requires_grad))
            continue
        name = str(op.get("module"))
        module = get_module(model, name)
        pruner = pruners.get(str(op.get("pruner")))
        if pruner is None:
            raise ModelError(f"Channel op {i}: unknown pruner {op.get('pruner')!r} for layer {name!r}.")
        pruner.pruning_dim = int(op.get("dim", -1))
        out = op.get("fn") == "out"
        try:
            size = pruner.get_out_channels(module) if out else pruner.get_in_channels(module)
        except Exception as exc:  # noqa: BLE001
            raise ModelError(
                f"Channel op {i}: layer {name!r} ({type(module).__name__}) does not fit "
                f"pruner {op.get('pruner')!r}: {exc}"
            ) from None
        if size is not None:
            _check_idxs(idxs, int(size), f"layer {name!r}", i)
        fn = pruner.prune_out_channels if out else pruner.prune_in_channels
        fn(module, idxs)
    retie(model, ties)
    return model


def _check_idxs(idxs: list[int], size: int, what: str, i: int) -> None:
    bad = [k for k in idxs if not 0 <= k < size]
    if bad:
        raise ModelError(f"Channel op {i}: indices {bad[:5]} are out of range for {what} with {size} channels.")
    if len(set(idxs)) >= size:
        raise ModelError(f"Channel op {i}: would remove every channel of {what}.")


@register_plan_replay(PRUNE_CHANNELS_KIND)
def replay_prune_channels(model: nn.Module, entry: dict[str, Any]) -> nn.Module:
    """Plan replay of kind ``prune_channels``: apply the recorded channel cuts to `model`."""
    return apply_channel_ops(model, entry.get("ops") or [])
