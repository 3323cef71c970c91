"""Attention modules as channel pruning sees them: which projections are query/key/value, how many
heads, how wide a head is, and the head-count attributes to update after whole heads are removed.

Hugging Face spells these differently per model family: ``query/key/value`` with
``num_attention_heads`` (BERT, ViT), ``q_proj/k_proj/v_proj`` with ``num_heads`` or
``num_attention_heads`` and ``head_dim`` (BART, OPT, GPT-Neo, ViT in transformers 5), ``q_lin/...``
with ``n_heads`` (DistilBERT), ``q/k/v`` with ``n_heads`` and ``inner_dim`` (T5),
``projection_query/...`` with ``num_heads`` and ``embed_dim`` (CvT). A module is an
attention layer here when it has three such projections of equal width and a head count (an
attribute, or the width over ``head_dim``). Grouped-query attention (keys and values narrower than
queries) is not treated as prunable by heads.
"""

from __future__ import annotations

from typing import Any

from torch import nn

QKV_NAMES: tuple[tuple[str, str, str], ...] = (
    ("query", "key", "value"),
    ("q_proj", "k_proj", "v_proj"),
    ("query_proj", "key_proj", "value_proj"),
    ("q_lin", "k_lin", "v_lin"),
    ("q", "k", "v"),
    ("projection_query", "projection_key", "projection_value"),
)
"""Names of the query/key/value projections, per model family."""

HEAD_COUNT_ATTRS = ("num_attention_heads", "num_heads", "n_heads")
"""Attributes holding an attention module's head count (updated when heads are removed)."""

HEAD_DIM_ATTRS = ("attention_head_size", "head_dim", "key_value_proj_dim")
"""Attributes holding the width of one head (never changed: whole heads go)."""

WIDTH_ATTRS = ("all_head_size", "inner_dim")
"""Attributes holding heads x head width (updated when heads are removed)."""

MAYBE_WIDTH_ATTRS = ("embed_dim",)
"""Attributes that hold heads x head width in some families (CvT divides ``embed_dim`` by the head
count to get the head width) and the model width in others: updated only when equal to heads x
head width before the cut."""


def _width(layer: Any) -> int | None:
    if isinstance(layer, nn.Linear):
        return int(layer.out_features)
    weight = getattr(layer, "weight", None)
    if type(layer).__name__ == "Conv1D" and weight is not None:
        return int(weight.shape[1])
    return None


def _int_attr(module: nn.Module, names: tuple[str, ...]) -> int | None:
    for name in names:
        value = getattr(module, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def projections(module: nn.Module) -> tuple[nn.Module, nn.Module, nn.Module] | None:
    """The query/key/value projections of `module` when it is an attention layer torchslim can prune
    by heads (three projections of equal width), else None."""
    for names in QKV_NAMES:
        layers = [getattr(module, n, None) for n in names]
        widths = [_width(layer) for layer in layers]
        if all(w is not None for w in widths) and len(set(widths)) == 1:
            q, k, v = layers
            assert isinstance(q, nn.Module) and isinstance(k, nn.Module) and isinstance(v, nn.Module)
            return q, k, v
    return None


def heads_of(attention: nn.Module) -> int:
    """The head count of an attention module (an attribute, or its query width over the head width)."""
    heads = _int_attr(attention, HEAD_COUNT_ATTRS)
    if heads is not None:
        return heads
    dim = _int_attr(attention, HEAD_DIM_ATTRS)
    qkv = projections(attention)
    if dim is None or qkv is None:
        return 0
    return (_width(qkv[0]) or 0) // dim


def head_dim_of(attention: nn.Module) -> int:
    """The width of one head of `attention`."""
    dim = _int_attr(attention, HEAD_DIM_ATTRS)
    if dim is not None:
        return dim
    qkv = projections(attention)
    heads = _int_attr(attention, HEAD_COUNT_ATTRS)
    if qkv is None or not heads:
        return 0
    return (_width(qkv[0]) or 0) // heads


def attention_layers(model: nn.Module) -> dict[int, tuple[str, nn.Module]]:
    """``id(projection) -> (attention name, attention module)`` for the query/key/value projections
    of every attention layer of `model` that can be pruned by whole heads."""
    found: dict[int, tuple[str, nn.Module]] = {}
    for name, module in model.named_modules():
        qkv = projections(module)
        if qkv is None:
            continue
        heads, dim = heads_of(module), head_dim_of(module)
        if heads <= 1 or dim <= 0 or heads * dim != _width(qkv[0]):
            continue
        for proj in qkv:
            found[id(proj)] = (name, module)
    return found


def set_heads(attention: nn.Module, name: str, heads: int, head_dim: int) -> list[dict[str, Any]]:
    """Set the head-count (and heads x width) attributes of `attention` after heads were removed;
    returns them as ``{"set", "attr", "value"}`` operations for the plan."""
    ops: list[dict[str, Any]] = []
    before = heads_of(attention) * head_dim
    widths = [*WIDTH_ATTRS, *(a for a in MAYBE_WIDTH_ATTRS if getattr(attention, a, None) == before)]
    for attr in HEAD_COUNT_ATTRS:
        if isinstance(getattr(attention, attr, None), int):
            setattr(attention, attr, heads)
            ops.append({"set": name, "attr": attr, "value": heads})
    for attr in widths:
        if isinstance(getattr(attention, attr, None), int):
            setattr(attention, attr, heads * head_dim)
            ops.append({"set": name, "attr": attr, "value": heads * head_dim})
    return ops


def grouped_query_projections(model: nn.Module) -> dict[str, str]:
    """``projection name -> reason`` for the query/key/value projections of grouped-query attention
    layers (keys and values narrower than queries): their heads are shared across query heads, which
    channel pruning does not model, and Torch-Pruning's coupling search through the repeat of the
    key/value heads can run for minutes, so they are left out of the search."""
    found: dict[str, str] = {}
    for name, module in model.named_modules():
        for names in QKV_NAMES:
            layers = [getattr(module, n, None) for n in names]
            widths = [_width(layer) for layer in layers]
            if any(w is None for w in widths) or len(set(widths)) == 1:
                continue
            for proj in names:
                full = f"{name}.{proj}" if name else proj
                found[full] = (
                    f"grouped-query attention ({widths[0]} query vs {widths[1]} key/value channels in {name!r}): "
                    "its heads are left whole"
                )
            break
    return found
