"""Calling a model on one batch's inputs, whatever their form, and finding the logits.

Shared by measurement, training and the techniques, so every part of torchslim accepts the same
batch forms: a Tensor (``model(x)``), a mapping of tensors (``model(**x)``), a tuple of tensors
(``model(*x)``) or a list of strings for text models that expose ``tokenize(texts)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from torchslim.core.errors import DataError, ModelError


def model_device(model: nn.Module) -> torch.device:
    for parameter in model.parameters():
        return parameter.device
    for buffer in model.buffers():
        return buffer.device
    return torch.device("cpu")


def to_device(value: Any, device: torch.device) -> Any:
    """Move every tensor inside `value` (tensor, mapping, list/tuple) to `device`."""
    if isinstance(value, torch.Tensor):
        return value if value.device == device else value.to(device)
    if isinstance(value, Mapping):
        return {k: to_device(v, device) for k, v in value.items()}
    if isinstance(value, (list, tuple)) and not is_text_batch(value):
        return type(value)(to_device(v, device) for v in value)
    return value


def is_text_batch(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and len(value) > 0 and all(isinstance(v, str) for v in value)


def call_model(model: nn.Module, inputs: Any) -> Any:
    """Run `model` on `inputs`: a Tensor (``model(x)``), a mapping (``model(**x)``), a list of str
    (``model(**model.tokenize(texts))``) or a tuple of tensors (``model(*x)``)."""
    if isinstance(inputs, torch.Tensor):
        return model(inputs)
    if isinstance(inputs, Mapping):
        return model(**inputs)
    if is_text_batch(inputs):
        tokenize = getattr(model, "tokenize", None)
        if tokenize is None:
            raise DataError(f"Inputs are a list of strings but {type(model).__name__} has no tokenize(texts) method.")
        encoded = tokenize(list(inputs))
        encoded = to_device(encoded, model_device(model))
        if isinstance(encoded, Mapping):
            return model(**encoded)
        return model(encoded)
    if isinstance(inputs, (list, tuple)):
        return model(*inputs)
    raise DataError(
        f"Unsupported model input of type {type(inputs).__name__}; expected a Tensor, a dict of tensors, "
        "a tuple of tensors or a list of strings."
    )


def logits_of(output: Any) -> torch.Tensor:
    """The logits tensor of a model output: the tensor itself, ``.logits``, ``["logits"]`` or the first
    element of a tuple."""
    if isinstance(output, torch.Tensor):
        return output
    logits = getattr(output, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(output, Mapping):
        mapped = output.get("logits")
        if isinstance(mapped, torch.Tensor):
            return mapped
    if isinstance(output, (list, tuple)) and output:
        first = output[0]
        if isinstance(first, torch.Tensor):
            return first
    raise ModelError(f"Cannot find logits in a model output of type {type(output).__name__}.")


def batch_size_of(inputs: Any) -> int:
    """The leading dimension of the first tensor in `inputs` (or the number of texts)."""
    if isinstance(inputs, torch.Tensor):
        return int(inputs.shape[0]) if inputs.dim() > 0 else 1
    if is_text_batch(inputs):
        return len(inputs)
    if isinstance(inputs, Mapping):
        for value in inputs.values():
            if isinstance(value, torch.Tensor):
                return batch_size_of(value)
    if isinstance(inputs, (list, tuple)):
        for value in inputs:
            if isinstance(value, torch.Tensor):
                return batch_size_of(value)
    raise DataError(f"Cannot infer a batch size from inputs of type {type(inputs).__name__}.")
