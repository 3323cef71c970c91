"""How closely a compressed model's outputs follow the original's.

Pure functions (float64 internally):

* ``sqnr_db(ref, approx) = 10 * log10( sum ref^2 / sum (ref - approx)^2 )`` in dB; ``+inf`` when
  the two are equal (no noise). Each 6.02 dB is about one bit of precision.
* ``cosine(a, b) = <a, b> / (|a| |b|)`` over the flattened tensors.
* ``kl_divergence(p_logits, q_logits) = mean_rows sum_c P_c (log P_c - log Q_c)`` with
  ``P = softmax(p_logits)``, ``Q = softmax(q_logits)`` along the last dimension (KL(P || Q), nats).

:func:`compare_models` runs both models on the same inputs and reports top-1 agreement (fraction of
samples whose argmax class matches), top-5 agreement (the reference's class among the candidate's
five largest; models with more than five classes), the mean KL(reference || candidate), and the cosine and SQNR
of the concatenated outputs.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from torchslim.core.errors import DataError
from torchslim.measure._util import call_model, eval_mode, is_text_batch, logits_of, model_device, to_device


def _f64(x: Any) -> torch.Tensor:
    return torch.as_tensor(x).detach().to("cpu", torch.float64)


def sqnr_db(reference: Any, approx: Any) -> float:
    """Signal-to-quantization-noise ratio in dB: ``10 log10(sum ref^2 / sum (ref - approx)^2)``."""
    ref, app = _f64(reference), _f64(approx)
    if ref.shape != app.shape:
        raise DataError(f"sqnr_db: shapes differ: {tuple(ref.shape)} vs {tuple(app.shape)}.")
    noise = float(((ref - app) ** 2).sum())
    signal = float((ref**2).sum())
    if noise == 0.0:
        return math.inf
    if signal == 0.0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def cosine(a: Any, b: Any) -> float:
    """Cosine similarity of the flattened tensors (1.0 when both are all-zero, 0.0 when one is)."""
    x, y = _f64(a).flatten(), _f64(b).flatten()
    if x.shape != y.shape:
        raise DataError(f"cosine: sizes differ: {x.numel()} vs {y.numel()}.")
    nx, ny = float(x.norm()), float(y.norm())
    if nx == 0.0 or ny == 0.0:
        return 1.0 if nx == ny else 0.0
    return float((x @ y) / (nx * ny))


def kl_divergence(p_logits: Any, q_logits: Any) -> float:
    """KL(softmax(p) || softmax(q)) along the last dimension, averaged over all other positions."""
    p, q = _f64(p_logits), _f64(q_logits)
    if p.shape != q.shape:
        raise DataError(f"kl_divergence: shapes differ: {tuple(p.shape)} vs {tuple(q.shape)}.")
    log_p = F.log_softmax(p, dim=-1)
    log_q = F.log_softmax(q, dim=-1)
    per_row = (log_p.exp() * (log_p - log_q)).sum(dim=-1)
    return float(per_row.mean().clamp_min(0.0))


@dataclasses.dataclass(frozen=True)
class Agreement:
    """Candidate vs reference outputs on the same inputs."""

    top1_agreement: float
    kl_divergence: float
    cosine: float
    sqnr_db: float
    samples: int
    top5_agreement: float | None = None
    """Fraction of samples whose reference top-1 class is among the candidate's top 5 (None below 6 classes)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _input_batches(loader_or_inputs: Any) -> Iterable[Any]:
    """Yield model inputs: one batch (Tensor, dict, list of str) or the inputs of each loader item."""
    if isinstance(loader_or_inputs, (torch.Tensor, Mapping)) or is_text_batch(loader_or_inputs):
        yield loader_or_inputs
        return
    for item in loader_or_inputs:
        if isinstance(item, (list, tuple)) and len(item) == 2 and not is_text_batch(item):
            yield item[0]
        else:
            yield item


def _outputs(model: nn.Module, inputs: Any) -> torch.Tensor:
    logits = logits_of(call_model(model, to_device(inputs, model_device(model))))
    logits = logits.detach().to("cpu", torch.float64)
    if logits.dim() == 1:
        logits = logits.unsqueeze(0)
    return logits.reshape(-1, logits.shape[-1])


def compare_models(
    reference: nn.Module,
    candidate: nn.Module,
    loader_or_inputs: Any,
    *,
    max_batches: int | None = None,
) -> Agreement:
    """Compare `candidate` against `reference` on a batch of inputs or a loader of batches.

    `loader_or_inputs` is one batch of inputs (Tensor, dict of tensors, list of str) or an iterable
    of batches, each either inputs or an ``(inputs, labels)`` pair (labels are ignored). Outputs are
    logits ``[..., classes]``, flattened to rows. Both models run in eval mode under no_grad with
    their modes restored.
    """
    refs: list[torch.Tensor] = []
    cands: list[torch.Tensor] = []
    with eval_mode(reference), eval_mode(candidate), torch.no_grad():
        for i, inputs in enumerate(_input_batches(loader_or_inputs)):
            if max_batches is not None and i >= max_batches:
                break
            r = _outputs(reference, inputs)
            c = _outputs(candidate, inputs)
            if r.shape != c.shape:
                raise DataError(
                    f"Batch {i}: reference output {tuple(r.shape)} and candidate output {tuple(c.shape)} differ."
                )
            refs.append(r)
            cands.append(c)
    if not refs:
        raise DataError("compare_models() read no inputs.")
    ref = torch.cat(refs)
    cand = torch.cat(cands)
    return Agreement(
        top1_agreement=float((ref.argmax(dim=1) == cand.argmax(dim=1)).double().mean()),
        kl_divergence=kl_divergence(ref, cand),
        cosine=cosine(ref, cand),
        sqnr_db=sqnr_db(ref, cand),
        samples=int(ref.shape[0]),
        top5_agreement=top_k_agreement(ref, cand, k=5),
    )


def top_k_agreement(reference: Any, candidate: Any, *, k: int) -> float | None:
    """Fraction of rows whose reference argmax is among the candidate's `k` largest logits; None
    when there are no more than `k` classes (it would always be 1)."""
    ref, cand = _f64(reference), _f64(candidate)
    if ref.shape != cand.shape:
        raise DataError(f"top_k_agreement: shapes differ: {tuple(ref.shape)} vs {tuple(cand.shape)}.")
    if ref.shape[-1] <= k:
        return None
    top = cand.reshape(-1, cand.shape[-1]).topk(k, dim=-1).indices
    hit = (top == ref.reshape(-1, ref.shape[-1]).argmax(dim=-1, keepdim=True)).any(dim=-1)
    return float(hit.double().mean())
