"""Example inputs for an ONNX export and for onnxruntime: positional tensors with names, and feeds."""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from torchslim.core.batches import logits_of
from torchslim.core.errors import ConfigError, ModelError


def _signature_order(model: nn.Module, keys: Sequence[str]) -> list[str]:
    try:
        params = list(inspect.signature(model.forward).parameters)
    except (TypeError, ValueError):
        return list(keys)
    ordered = [p for p in params if p in keys]
    for i, name in enumerate(ordered):
        if params.index(name) != i:
            raise ModelError(
                f"export_onnx: the example input gives {list(keys)} but {type(model).__name__}.forward takes "
                f"{params}; give the leading arguments without gaps."
            )
    return ordered + [k for k in keys if k not in ordered]


def forward_parameters(model: nn.Module) -> list[str] | None:
    """The names of ``model.forward``'s parameters, or None when they cannot be read."""
    try:
        return list(inspect.signature(model.forward).parameters)
    except (TypeError, ValueError):
        return None


def keyword_inputs(model: nn.Module, example_input: Mapping[str, Any]) -> tuple[tuple[Tensor, ...], list[str]]:
    """The tensors of a mapping example and their names, in ``forward``'s order (then the mapping's).

    Unlike :func:`normalize_inputs` gaps are allowed: the export passes these by name (see
    :func:`torchslim.deploy.onnxruntime.export.export_onnx`), and parameters the example does not give
    keep their defaults.
    """
    params = forward_parameters(model) or []
    keys = [str(k) for k in example_input]
    for key in keys:
        if not isinstance(example_input[key], Tensor):
            raise ConfigError(
                f"export_onnx: example_input[{key!r}] is a {type(example_input[key]).__name__}, not a tensor."
            )
    ordered = [p for p in params if p in keys] + [k for k in keys if k not in params]
    return tuple(example_input[k] for k in ordered), ordered


DECODER_KEYS = ("decoder_input_ids", "decoder_inputs_embeds", "labels", "encoder_outputs")


def with_decoder_inputs(model: nn.Module, example_input: Any) -> Any:
    """`example_input` with ``decoder_input_ids`` added when an encoder-decoder model needs them.

    For a mapping holding ``input_ids`` but none of :data:`DECODER_KEYS`, given to a model whose
    ``config.is_encoder_decoder`` is true and whose ``forward`` takes ``decoder_input_ids``, these are
    ``input_ids`` shifted right by one with ``config.decoder_start_token_id`` (else
    ``pad_token_id``) first, the teacher-forcing convention of such models. Anything else is
    returned as given.
    """
    config = getattr(model, "config", None)
    if (
        not isinstance(example_input, Mapping)
        or not getattr(config, "is_encoder_decoder", False)
        or "decoder_input_ids" not in (forward_parameters(model) or [])
        or any(k in example_input for k in DECODER_KEYS)
        or not isinstance(example_input.get("input_ids"), Tensor)
    ):
        return example_input
    start = getattr(config, "decoder_start_token_id", None)
    start = getattr(config, "pad_token_id", None) if start is None else start
    if not isinstance(start, int):
        raise ModelError(
            f"{type(model).__name__} needs decoder_input_ids and its config has neither decoder_start_token_id "
            "nor pad_token_id to build them from input_ids; give decoder_input_ids in the example input."
        )
    ids: Tensor = example_input["input_ids"]
    decoder = torch.cat([torch.full_like(ids[:, :1], start), ids[:, :-1]], dim=1)
    return {**example_input, "decoder_input_ids": decoder}


def output_tensor(output: Any) -> Tensor:
    """The tensor a parity check compares: the output itself, its logits (as
    :func:`torchslim.core.batches.logits_of` finds them), else the first tensor of a
    ``ModelOutput`` / mapping / tuple."""
    try:
        return logits_of(output)
    except ModelError:
        pass
    values = list(output.values()) if isinstance(output, Mapping) else output
    if isinstance(values, (list, tuple)):
        for value in values:
            if isinstance(value, Tensor):
                return value
    raise ModelError(f"cannot find an output tensor in a model output of type {type(output).__name__}.")


def normalize_inputs(
    model: nn.Module, example_input: Any, input_names: Sequence[str] | None = None
) -> tuple[tuple[Tensor, ...], list[str]]:
    """Positional tensors and their names for a tensor, a tuple of tensors, or a mapping."""
    if isinstance(example_input, Tensor):
        args: tuple[Tensor, ...] = (example_input,)
        names = ["input"]
    elif isinstance(example_input, Mapping):
        keys = _signature_order(model, [str(k) for k in example_input])
        args = tuple(example_input[k] for k in keys)
        names = list(keys)
    elif (
        isinstance(example_input, (tuple, list)) and example_input and all(isinstance(t, Tensor) for t in example_input)
    ):
        args = tuple(example_input)
        names = [f"input_{i}" for i in range(len(args))]
    else:
        raise ConfigError(
            "export_onnx: example_input must be a tensor, a tuple of tensors or a mapping of tensors, "
            f"got {type(example_input).__name__}."
        )
    if input_names is not None:
        if len(input_names) != len(args):
            raise ConfigError(f"export_onnx: {len(input_names)} input_names for {len(args)} inputs.")
        names = [str(n) for n in input_names]
    return args, names


def _array(value: Any) -> np.ndarray:
    return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


def onnx_feeds(session: Any, example_input: Any, *, strict: bool = False) -> dict[str, np.ndarray]:
    """Input arrays for `session` from a tensor / array, a tuple of them, or a mapping name -> value.

    A mapping must hold every input of the model; with `strict` it may hold nothing else.
    """
    names = [i.name for i in session.get_inputs()]
    if isinstance(example_input, Mapping):
        if strict:
            for key in example_input:
                if key not in names:
                    raise ConfigError(f"feeds key {key!r} is not an input of the ONNX model; inputs: {names}.")
        missing = [n for n in names if n not in example_input]
        if missing:
            raise ConfigError(f"ONNX inputs {missing} are missing from the given inputs {list(example_input)}.")
        return {n: _array(example_input[n]) for n in names}
    if isinstance(example_input, (Tensor, np.ndarray)):
        values = [example_input]
    elif isinstance(example_input, (tuple, list)):
        values = list(example_input)
    else:
        raise ConfigError(
            "feeds must be a tensor, a tuple of tensors or a dict of input name -> array, "
            f"got {type(example_input).__name__}."
        )
    if len(values) != len(names):
        raise ConfigError(f"The ONNX model takes {len(names)} inputs {names}, got {len(values)}.")
    return {n: _array(v) for n, v in zip(names, values, strict=True)}


def repeat_first_sample(arrays: dict[str, np.ndarray], batch_size: int | None) -> dict[str, np.ndarray]:
    """Every feed with its first sample repeated `batch_size` times (None: the feeds as given)."""
    if batch_size is None:
        return arrays
    if batch_size < 1:
        raise ConfigError(f"batch_size={batch_size!r} must be >= 1.")
    return {
        k: np.ascontiguousarray(np.repeat(v[:1], batch_size, axis=0)) if v.ndim > 0 else v for k, v in arrays.items()
    }
