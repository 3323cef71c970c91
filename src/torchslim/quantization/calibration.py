"""Calibration data: take the first N samples, check them before any work, run a model on them.

Batches are ``(inputs, labels)`` pairs or bare inputs; inputs are a tensor, a mapping of tensors
(``model(**inputs)``), a tuple of tensors (``model(*inputs)``) or a list of strings for a model with
``tokenize(texts)``. :func:`take_calibration` fails with a :class:`DataError` that says what is wrong
(empty set, NaN / inf values, a batch whose shape differs from the rest or from the model's example
input, a batch the model cannot run) before a quantizer changes anything.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from torchslim.core.errors import DataError


def _inputs_of(batch: Any) -> Any:
    if isinstance(batch, (tuple, list)) and len(batch) == 2 and not all(isinstance(x, str) for x in batch):
        return batch[0]
    return batch


def batch_size_of(inputs: Any) -> int:
    """Number of samples in one batch's inputs."""
    if isinstance(inputs, Tensor):
        return int(inputs.shape[0]) if inputs.dim() else 1
    if isinstance(inputs, Mapping):
        first = next(iter(inputs.values()), None)
        return batch_size_of(first) if first is not None else 0
    if isinstance(inputs, (list, tuple)):
        if inputs and all(isinstance(x, str) for x in inputs):
            return len(inputs)
        return batch_size_of(inputs[0]) if inputs else 0
    raise DataError(
        f"Calibration inputs must be tensors, mappings of tensors or lists of strings; got {type(inputs).__name__}."
    )


def _slice(inputs: Any, n: int) -> Any:
    if isinstance(inputs, Tensor):
        return inputs[:n]
    if isinstance(inputs, Mapping):
        return {k: (v[:n] if isinstance(v, Tensor) else v) for k, v in inputs.items()}
    if isinstance(inputs, list) and all(isinstance(x, str) for x in inputs):
        return inputs[:n]
    if isinstance(inputs, (list, tuple)):
        return type(inputs)(_slice(x, n) for x in inputs)
    return inputs


def _tensors(inputs: Any) -> Iterator[tuple[str, Tensor]]:
    if isinstance(inputs, Tensor):
        yield "inputs", inputs
    elif isinstance(inputs, Mapping):
        for k, v in inputs.items():
            if isinstance(v, Tensor):
                yield str(k), v
    elif isinstance(inputs, (list, tuple)):
        for i, v in enumerate(inputs):
            if isinstance(v, Tensor):
                yield f"inputs[{i}]", v


def _signature(inputs: Any) -> Any:
    """Per-sample shapes (without the batch dimension), to compare batches with each other."""
    if isinstance(inputs, list) and all(isinstance(x, str) for x in inputs):
        return "text"
    return tuple((name, tuple(t.shape[1:]), t.dtype) for name, t in _tensors(inputs))


def take_calibration(loader: Iterable[Any] | None, samples: int, *, what: str = "calibration") -> list[Any]:
    """The inputs of the first `samples` samples of `loader`, as a list of batches (the last cut).

    Raises :class:`DataError` for a missing or empty set, NaN / inf values, or batches whose
    per-sample shapes disagree.
    """
    if loader is None:
        raise DataError(f"Quantization needs {what} data, but none was given.")
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise DataError(f"{what}_samples must be a positive integer, got {samples!r}.")
    batches: list[Any] = []
    taken = 0
    first_sig = None
    for index, batch in enumerate(loader):
        inputs = _inputs_of(batch)
        n = batch_size_of(inputs)
        if n == 0:
            continue
        if taken + n > samples:
            inputs = _slice(inputs, samples - taken)
            n = samples - taken
        for name, tensor in _tensors(inputs):
            if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                bad = int((~torch.isfinite(tensor)).sum())
                raise DataError(f"{what} batch {index}: {name} contains {bad} NaN or inf value(s).")
        sig = _signature(inputs)
        if first_sig is None:
            first_sig = sig
        elif sig != first_sig:
            raise DataError(
                f"{what} batch {index} has per-sample shape {_describe(sig)}, but batch 0 has {_describe(first_sig)}."
            )
        batches.append(inputs)
        taken += n
        if taken >= samples:
            break
    if not batches:
        raise DataError(f"The {what} set is empty: quantization needs at least one sample.")
    return batches


def _describe(sig: Any) -> str:
    if sig == "text":
        return "text"
    return ", ".join(f"{name} {list(shape)}" for name, shape, _ in sig) or "(no tensors)"


def check_against_example(batches: list[Any], example_input: Any, *, what: str = "calibration") -> None:
    """Raise :class:`DataError` when the batches' per-sample shapes differ from `example_input`'s."""
    if example_input is None or not batches:
        return
    if not isinstance(example_input, Tensor) or not isinstance(batches[0], Tensor):
        return
    got, want = tuple(batches[0].shape[1:]), tuple(example_input.shape[1:])
    if got != want:
        raise DataError(
            f"{what} inputs have per-sample shape {list(got)}, but the model expects {list(want)} "
            f"(its example input is {list(example_input.shape)})."
        )


def call_model(model: nn.Module, inputs: Any) -> Any:
    """Run `model` on one batch's inputs (see the module docstring for the accepted forms)."""
    if isinstance(inputs, Tensor):
        return model(inputs)
    if isinstance(inputs, Mapping):
        return model(**inputs)
    if isinstance(inputs, list) and inputs and all(isinstance(x, str) for x in inputs):
        tokenize = getattr(model, "tokenize", None)
        if not callable(tokenize):
            raise DataError(f"The inputs are strings, but {type(model).__name__} has no tokenize(texts) method.")
        try:
            encoded = tokenize(inputs, padding="longest")
        except TypeError:
            encoded = tokenize(inputs)
        return model(**encoded)
    if isinstance(inputs, (tuple, list)):
        return model(*inputs)
    raise DataError(f"Cannot call {type(model).__name__} on inputs of type {type(inputs).__name__}.")


def output_tensor(outputs: Any) -> Tensor:
    """The main tensor of a model's outputs (itself, ``.logits``, ``["logits"]``, or the first item)."""
    if isinstance(outputs, Tensor):
        return outputs
    for attr in ("logits", "last_hidden_state"):
        value = getattr(outputs, attr, None)
        if isinstance(value, Tensor):
            return value
    if isinstance(outputs, Mapping):
        for value in outputs.values():
            if isinstance(value, Tensor):
                return value
    if isinstance(outputs, (tuple, list)) and outputs and isinstance(outputs[0], Tensor):
        return outputs[0]
    raise DataError(f"Cannot find an output tensor in {type(outputs).__name__}.")


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and no autograd for the block; every module's previous mode comes back after."""
    flags = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        with torch.no_grad():
            yield model
    finally:
        for module, flag in flags:
            module.training = flag


def check_model_runs(model: nn.Module, batches: list[Any], *, what: str = "calibration") -> Tensor:
    """Run `model` on the first batch; a failure becomes a :class:`DataError` naming the shape."""
    first = batches[0]
    try:
        with eval_mode(model):
            out = output_tensor(call_model(model, first))
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure here means the data does not fit the model
        raise DataError(
            f"{what} batch 0 ({_describe(_signature(first))}) does not fit {type(model).__name__}: "
            f"{type(exc).__name__}: {exc}"
        ) from None
    if out.is_floating_point() and not torch.isfinite(out).all():
        raise DataError(f"{type(model).__name__} produces NaN or inf on {what} batch 0.")
    return out
