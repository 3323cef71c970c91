"""GPTQ: error-compensating rounding of low-bit weights (Frantar, Ashkboos, Hoefler & Alistarh 2023,
"GPTQ: Accurate post-training quantization for generative pre-trained transformers", Algorithm 1).

For a layer with weight ``W [rows, cols]`` and calibration inputs ``X [n, cols]`` (for a convolution,
the im2col patches), GPTQ minimises ``||W X^T - W_hat X^T||^2`` column by column (Optimal Brain
Quantization, Frantar & Alistarh 2022). With the Hessian ``H = 2 X^T X / n`` (dampened by
``lambda = damp * mean(diag(H))``) and the upper Cholesky factor ``U`` of ``H^-1``, column ``j``
is quantized and its error is spread over the columns not yet quantized::

    e_j     = (w_j - quant(w_j)) / U[j, j]
    W[:, k] = W[:, k] - e_j * U[j, k]        for k > j

done in blocks of `block_size` columns with lazy updates. Per-group parameters are chosen when
a group's first column is reached, from the already-updated weights (as in the paper's code);
per-tensor / per-channel parameters are chosen once, from the original weights.
"""

from __future__ import annotations

import math
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from torchslim.core.errors import ModelError
from torchslim.quantization.functional import (
    Granularity,
    check_bits,
    choose_qparams,
    qrange,
)
from torchslim.quantization.observers import weight_qparams
from torchslim.quantization.specs import WeightSpec


class HessianAccumulator:
    """Accumulates ``H = 2 X^T X / n`` from a layer's inputs (Linear or Conv2d without groups)."""

    def __init__(self, module: nn.Module) -> None:
        if not gptq_supported(module):
            raise ModelError(f"GPTQ supports Linear and ungrouped Conv2d layers, not {type(module).__name__}.")
        self.module = module
        weight = module.weight
        assert isinstance(weight, Tensor)
        cols = weight[0].numel()
        self.hessian = torch.zeros(cols, cols, dtype=torch.float32)
        self.samples = 0

    def _columns(self, x: Tensor) -> Tensor:
        if isinstance(self.module, nn.Linear):
            return x.reshape(-1, x.shape[-1])
        m = cast(nn.Conv2d, self.module)  # gptq_supported(): Linear or Conv2d
        pad = getattr(m, "static_padding", None)
        if isinstance(pad, nn.Module):
            x = pad(x)
        padding: str | tuple[int, ...] | int = m.padding
        if isinstance(padding, str):
            if padding == "valid":
                padding = 0
            else:  # "same" with stride 1: pad like the convolution does
                k = m.kernel_size
                d = m.dilation
                total = [d[i] * (k[i] - 1) for i in range(2)]
                x = F.pad(x, (total[1] // 2, total[1] - total[1] // 2, total[0] // 2, total[0] - total[0] // 2))
                padding = 0
        if m.padding_mode != "zeros" and not isinstance(m.padding, str):
            x = F.pad(x, m._reversed_padding_repeated_twice, mode=m.padding_mode)
            padding = 0
        patches = F.unfold(x, m.kernel_size, dilation=m.dilation, padding=padding, stride=m.stride)
        return patches.transpose(1, 2).reshape(-1, patches.shape[1])

    @torch.no_grad()
    def add(self, x: Tensor) -> None:
        cols = self._columns(x.detach().float())
        n = cols.shape[0]
        if n == 0:
            return
        total = self.samples + n
        self.hessian *= self.samples / total
        cols = cols * math.sqrt(2.0 / total)
        self.hessian += cols.t() @ cols
        self.samples = total


def gptq_supported(module: nn.Module) -> bool:
    if isinstance(module, nn.Linear):
        return True
    return isinstance(module, nn.Conv2d) and module.groups == 1


def _qdq_column(w: Tensor, scale: Tensor, zp: Tensor, bits: int) -> tuple[Tensor, Tensor]:
    if bits == 1:
        codes = torch.where(w >= 0, torch.ones_like(w), -torch.ones_like(w))
        return codes, codes * scale
    qmin, qmax = qrange(bits)
    codes = torch.clamp(torch.round(w / scale) + zp, qmin, qmax)
    return codes, (codes - zp) * scale


def _prepared_hessian(hessian: Tensor, cols: int) -> Tensor:
    if hessian.shape != (cols, cols):
        raise ModelError(f"GPTQ: Hessian {list(hessian.shape)} does not match weight columns {cols}.")
    H = hessian.clone().double()
    dead = torch.diag(H) == 0
    # Columns whose input was always 0 carry no information; unlike the reference code, their
    # weights are kept (round to nearest) so inputs unseen in calibration still see them.
    H[dead, dead] = 1.0
    return H


def _group_qparams(block: Tensor, bits: int, symmetric: bool) -> tuple[Tensor, Tensor]:
    """Scale and zero point of each row of a group's (already updated) weights."""
    if bits == 1:
        return block.abs().mean(dim=1).clamp(min=1e-12), torch.zeros(block.shape[0], dtype=torch.int32)
    return choose_qparams(block.amin(dim=1), block.amax(dim=1), bits=bits, symmetric=symmetric)


def _inverse_cholesky(H: Tensor, damp: float) -> Tensor:
    """The upper Cholesky factor of ``(H + lambda I)^-1`` (float32), with ``lambda = damp *
    mean(diag(H))`` raised tenfold until the factorisation succeeds (at most 6 tries)."""
    cols = H.shape[0]
    mean_diag = float(torch.diag(H).mean())
    for attempt in range(6):
        Hd = H + (damp * (10**attempt)) * mean_diag * torch.eye(cols, dtype=H.dtype)
        try:
            L = torch.linalg.cholesky(Hd)
            return torch.linalg.cholesky(torch.cholesky_inverse(L), upper=True).float()
        except RuntimeError:  # torch.linalg.LinAlgError subclasses RuntimeError
            continue
    raise ModelError("GPTQ: the Hessian is not positive definite even with strong dampening.")


@torch.no_grad()
def gptq_quantize(
    weight: Tensor,
    hessian: Tensor,
    *,
    spec: WeightSpec,
    block_size: int = 128,
    damp: float = 0.01,
    range_method: str = "minmax",
) -> tuple[Tensor, Tensor, Tensor]:
    """GPTQ codes, scale and zero point for `weight` (``[out, ...]``) given the input Hessian.

    Returns ``(codes int8 shaped like weight, scale, zero_point)`` with the parameter shape of
    ``spec.granularity``.
    """
    bits = check_bits(spec.bits)
    g = spec.granularity
    g.check(weight.shape, what="weight")
    shape = weight.shape
    W = weight.detach().reshape(shape[0], -1).float().clone()
    rows, cols = W.shape
    Hinv = _inverse_cholesky(_prepared_hessian(hessian, cols), damp)
    grouped = g.kind == "per_group" and g.axis == 0
    k = g.group_size or cols
    if grouped:  # parameters chosen group by group below
        scale0, zp0 = torch.ones(rows, -(-cols // k)), torch.zeros(rows, -(-cols // k), dtype=torch.int32)
        full_scale, full_zp = torch.ones(rows, cols), torch.zeros(rows, cols)
    else:
        scale0, zp0 = weight_qparams(
            W.reshape(shape), bits=bits, symmetric=spec.symmetric, granularity=g, method=range_method
        )
        full_scale = g.expand(scale0, shape).reshape(rows, cols).clone()
        full_zp = g.expand(zp0.float(), shape).reshape(rows, cols).clone()
    codes = torch.zeros(rows, cols)
    for i1 in range(0, cols, block_size):
        i2 = min(i1 + block_size, cols)
        W1 = W[:, i1:i2].clone()
        Err1 = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            col = i1 + i
            w, d = W1[:, i], Hinv1[i, i]
            if grouped and col % k == 0:
                stop = min(col + k, cols)
                block = torch.cat([W1[:, i:], W[:, i2:]], dim=1)[:, : stop - col]
                s, z = _group_qparams(block, bits, spec.symmetric)
                scale0[:, col // k] = s
                zp0[:, col // k] = z
                full_scale[:, col:stop] = s[:, None]
                full_zp[:, col:stop] = z[:, None].float()
            c, q = _qdq_column(w, full_scale[:, col], full_zp[:, col], bits)
            codes[:, col] = c
            err = (w - q) / d
            W1[:, i:] -= err.unsqueeze(1) @ Hinv1[i, i:].unsqueeze(0)
            Err1[:, i] = err
        W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:]

    if grouped:
        scale0, zp0 = scale0.reshape(g.param_shape(shape)), zp0.reshape(g.param_shape(shape))
    return codes.reshape(shape).to(torch.int8), scale0, zp0


def layer_error(weight: Tensor, approx: Tensor, hessian: Tensor) -> float:
    """``tr((W - W_hat) H (W - W_hat)^T)``: the proxy loss GPTQ minimises (for tests / reports)."""
    delta = (weight - approx).reshape(weight.shape[0], -1).double()
    return float(torch.einsum("ij,jk,ik->", delta, hessian.double(), delta))


__all__ = ["HessianAccumulator", "gptq_quantize", "gptq_supported", "layer_error", "Granularity"]
