"""Top-1 accuracy and mean loss of a classifier over a loader of ``(inputs, labels)`` batches.

``accuracy = (1/N) * sum_i [argmax_c logits_ic == y_i]`` and ``loss = (1/N) * sum_i loss_fn(logits_i, y_i)``
(default loss: cross-entropy), over the N samples of the batches read.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from torchslim.core.errors import ConfigError, DataError
from torchslim.measure._util import call_model, eval_mode, logits_of, model_device, to_device


@dataclasses.dataclass(frozen=True)
class EvalStats:
    """Top-1 accuracy in [0, 1], mean loss per sample, and the number of samples evaluated."""

    accuracy: float
    loss: float
    samples: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def split_batch(batch: Any, *, index: int = 0) -> tuple[Any, Any]:
    """Split one loader item into ``(inputs, labels)``."""
    if isinstance(batch, (list, tuple)) and len(batch) == 2:
        return batch[0], batch[1]
    raise DataError(
        f"Batch {index} must be an (inputs, labels) pair, got {type(batch).__name__}"
        + (f" of length {len(batch)}" if isinstance(batch, (list, tuple)) else "")
        + "."
    )


def evaluate(
    model: nn.Module,
    loader: Iterable[Any],
    *,
    max_batches: int | None = None,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> EvalStats:
    """Evaluate `model` on `loader` in eval mode under ``torch.no_grad`` (modes restored afterwards).

    Batches are ``(inputs, labels)``; inputs are a Tensor (``model(x)``), a dict of tensors
    (``model(**x)``) or a list of str for a text model with ``tokenize(texts)``
    (``model(**model.tokenize(texts))``). The output is a logits tensor or an object with ``.logits``.
    Labels are class indices. `loss_fn(logits, labels)` must return the *mean* loss of a batch
    (default ``torch.nn.functional.cross_entropy``); it is weighted by batch size.
    """
    if max_batches is not None and (
        isinstance(max_batches, bool) or not isinstance(max_batches, int) or max_batches < 1
    ):
        raise ConfigError(f"max_batches={max_batches!r} must be a positive integer or None.")
    loss_fn = loss_fn or F.cross_entropy
    device = model_device(model)
    correct = 0
    samples = 0
    loss_sum = 0.0
    with eval_mode(model), torch.no_grad():
        for i, batch in enumerate(loader):
            if max_batches is not None and i >= max_batches:
                break
            inputs, labels = split_batch(batch, index=i)
            labels = torch.as_tensor(labels).to(device)
            logits = logits_of(call_model(model, to_device(inputs, device)))
            if logits.dim() != 2 or logits.shape[0] != labels.shape[0]:
                raise DataError(
                    f"Batch {i}: logits of shape {tuple(logits.shape)} do not match labels of shape "
                    f"{tuple(labels.shape)}; expected logits [batch, classes]."
                )
            if labels.dtype.is_floating_point:
                raise DataError(f"Batch {i}: labels must be class indices, got dtype {labels.dtype}.")
            n = int(labels.shape[0])
            correct += int((logits.argmax(dim=1) == labels).sum().item())
            loss_sum += float(loss_fn(logits.float(), labels).item()) * n
            samples += n
    if samples == 0:
        raise DataError("evaluate() read no samples: the loader is empty.")
    return EvalStats(accuracy=correct / samples, loss=loss_sum / samples, samples=samples)


def head_mismatch(model: nn.Module, example_input: Any, num_classes: int | None) -> str | None:
    """Why top-1 accuracy against `num_classes` labels would mean nothing for `model`, or None.

    Accuracy compares ``argmax`` of the output with the label, so it needs a classification head with
    exactly one logit per class: a ``[batch, num_classes]`` output. An embedding model (MiniLM's 384
    features), an ImageNet head (1000 logits) on a 3-class folder, or a sequence output is judged by
    agreement with the original model instead. Unknown `num_classes` is not a mismatch.
    """
    if num_classes is None:
        return None
    with torch.no_grad(), eval_mode(model):
        out = logits_of(call_model(model, to_device(example_input, model_device(model))))
    if out.dim() != 2 or int(out.shape[-1]) != int(num_classes):
        shape = "x".join(str(d) for d in out.shape[1:])
        return f"the model's output ({shape} per sample) is not one logit per class of the data's {num_classes} classes"
    return None
