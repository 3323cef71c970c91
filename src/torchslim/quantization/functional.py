"""Pure quantization math: one granularity notion, `choose_qparams`, `quantize`, `dequantize`,
`fake_quantize` (straight-through) and LSQ's learnable-step fake quantizer.

Uniform affine quantization (Jacob et al. 2018, "Quantization and training of neural networks for
efficient integer-arithmetic-only inference", eq. 1) maps a real value ``x`` to a ``b``-bit integer
code ``q`` with a scale ``s > 0`` and an integer zero point ``z``::

    q     = clamp(round(x / s) + z, qmin, qmax)          (quantize; round half to even, as ONNX)
    x_hat = s * (q - z)                                    (dequantize)

Codes are always *signed* ``b``-bit integers, ``qmin = -2**(b-1)``, ``qmax = 2**(b-1) - 1`` (an
asymmetric range only moves ``z``). From an observed range ``[lo, hi]`` (widened to contain 0 so
that zero is exact, which zero padding and ReLU need):

* symmetric:  ``s = max(|lo|, |hi|) / qmax``, ``z = 0`` (codes in ``[-qmax, qmax]``)
* asymmetric: ``s = (hi - lo) / (qmax - qmin)``, ``z = qmin - round(lo / s)``

One bit is the binary quantizer (BinaryConnect, Courbariaux et al. 2015; XNOR-Net, Rastegari et al.
2016): ``q = sign(x)`` in ``{-1, +1}`` (0 maps to +1) and ``x_hat = s * q`` with
``s = mean(|x|)``, the L2-optimal scale for a fixed sign pattern; stored codes are ``{-1, +1}``
with ``z = 0``.

**Granularity** says which elements share ``(s, z)``: per tensor, per channel along any axis, or
per group of ``K`` consecutive elements of each channel's flattened slice (the GPTQ / AWQ layout
for a Linear weight ``[out, in]`` with ``axis=0``: every output row is cut into groups of ``K``
inputs). Every granularity is a view of the tensor as a matrix ``[G, N]`` whose rows share
parameters (:meth:`Granularity.rows`), so one code path serves all three; parameters have shape
``[]`` (per tensor), ``[C]`` (per channel) or ``[C, ceil(R / K)]`` (per group, R = elements per
channel; a last partial group is allowed).

The straight-through estimator (Bengio et al. 2013) passes the gradient of ``round`` as 1 inside the
clamp range and 0 outside. LSQ (Esser et al. 2020, "Learned step size quantization") also learns
``s``: with ``v = x / s``, ``d x_hat / d s = round(v) - v`` inside the range and ``qmin - z`` or
``qmax - z`` outside, and the step-size gradient is scaled by ``g = 1 / sqrt(N * qmax)``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal, cast

import torch
from torch import Tensor

from torchslim.core.errors import ConfigError

GranularityKind = Literal["per_tensor", "per_channel", "per_group"]
GRANULARITIES: tuple[str, ...] = ("per_tensor", "per_channel", "per_group")
MIN_BITS, MAX_BITS = 1, 8
EPS = 1e-12


def check_bits(bits: Any, *, name: str = "bits") -> int:
    """Return `bits` as an int in [1, 8], or raise :class:`ConfigError` naming `name`."""
    if isinstance(bits, bool) or not isinstance(bits, int):
        if isinstance(bits, float) and bits.is_integer():
            bits = int(bits)
        else:
            raise ConfigError(f"{name} must be an integer in [{MIN_BITS}, {MAX_BITS}], got {bits!r}.")
    if not MIN_BITS <= bits <= MAX_BITS:
        raise ConfigError(f"{name}={bits} is out of range [{MIN_BITS}, {MAX_BITS}] (supported bit-widths are 1-8).")
    return bits


def qrange(bits: int) -> tuple[int, int]:
    """The signed code range ``(qmin, qmax)`` of `bits`-bit integers; ``(-1, 1)`` for 1 bit (binary)."""
    bits = check_bits(bits)
    if bits == 1:
        return -1, 1
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


@dataclasses.dataclass(frozen=True)
class Granularity:
    """Which elements share quantization parameters.

    ``kind``: ``"per_tensor"``, ``"per_channel"`` (one ``(s, z)`` per index of `axis`) or
    ``"per_group"`` (per channel of `axis`, and within it per `group_size` consecutive elements of
    the channel's flattened slice). `axis` may be negative; it is checked against a tensor's rank by
    :meth:`check`.
    """

    kind: GranularityKind = "per_tensor"
    axis: int = 0
    group_size: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in GRANULARITIES:
            from torchslim.core.errors import did_you_mean

            raise ConfigError(
                f"granularity={self.kind!r} is not one of {list(GRANULARITIES)}."
                + did_you_mean(str(self.kind), GRANULARITIES)
            )
        if isinstance(self.axis, bool) or not isinstance(self.axis, int):
            raise ConfigError(f"granularity axis must be an integer, got {self.axis!r}.")
        if self.kind == "per_group":
            if isinstance(self.group_size, bool) or not isinstance(self.group_size, int) or self.group_size < 1:
                raise ConfigError(f"per_group granularity needs group_size >= 1, got {self.group_size!r}.")
        elif self.group_size is not None:
            object.__setattr__(self, "group_size", None)

    @classmethod
    def per_tensor(cls) -> Granularity:
        return cls("per_tensor")

    @classmethod
    def per_channel(cls, axis: int = 0) -> Granularity:
        return cls("per_channel", axis=axis)

    @classmethod
    def per_group(cls, group_size: int, axis: int = 0) -> Granularity:
        return cls("per_group", axis=axis, group_size=group_size)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "axis": self.axis, "group_size": self.group_size}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Granularity:
        kind = cast(GranularityKind, str(data.get("kind", "per_tensor")))  # checked in __post_init__
        return cls(kind, int(data.get("axis", 0)), data.get("group_size"))

    def check(self, shape: torch.Size | tuple[int, ...], *, what: str = "tensor") -> int:
        """Return the non-negative axis for a tensor of `shape`; raise naming `what` if it has none."""
        if self.kind == "per_tensor":
            return 0
        ndim = len(shape)
        if not -ndim <= self.axis < ndim:
            raise ConfigError(
                f"{self.kind} axis={self.axis} does not exist for {what} of shape {list(shape)} "
                f"(valid axes: {-ndim}..{ndim - 1})."
            )
        return self.axis % ndim

    def group_length(self) -> int:
        """Elements per group (per_group only)."""
        if self.group_size is None:
            raise ConfigError(f"{self.kind} granularity has no group size.")
        return self.group_size

    def per_output_channel(self, shape: torch.Size | tuple[int, ...]) -> bool:
        """True when a weight of `shape` has one ``(s, z)`` per tensor or per output channel (axis 0):
        the layouts integer kernels (QLinearConv, QGemm, MatMulInteger) take."""
        return self.kind == "per_tensor" or (self.kind == "per_channel" and self.check(shape) == 0)

    def param_shape(self, shape: torch.Size | tuple[int, ...]) -> tuple[int, ...]:
        """Shape of the scale / zero-point tensors for a tensor of `shape`."""
        if self.kind == "per_tensor":
            return ()
        axis = self.check(shape)
        channels = shape[axis]
        if self.kind == "per_channel":
            return (channels,)
        rest = math.prod(shape) // max(channels, 1) if channels else 0
        return (channels, -(-rest // self.group_length()))

    def rows(self, x: Tensor) -> Tensor:
        """`x` as a matrix ``[G, N]`` whose rows share parameters (per group: zero-padded)."""
        if self.kind == "per_tensor":
            return x.reshape(1, -1)
        axis = self.check(x.shape)
        moved = x.movedim(axis, 0).reshape(x.shape[axis], -1)
        if self.kind == "per_channel":
            return moved
        k = self.group_length()
        rest = moved.shape[1]
        pad = (-rest) % k
        if pad:
            moved = torch.nn.functional.pad(moved, (0, pad))
        return moved.reshape(-1, k)

    def unrows(self, rows: Tensor, shape: torch.Size | tuple[int, ...]) -> Tensor:
        """Inverse of :meth:`rows` for a tensor of the original `shape`."""
        if self.kind == "per_tensor":
            return rows.reshape(shape)
        axis = self.check(shape)
        channels = shape[axis]
        moved_shape = (channels, *[s for i, s in enumerate(shape) if i != axis])
        if self.kind == "per_group":
            rest = math.prod(shape) // max(channels, 1) if channels else 0
            rows = rows.reshape(channels, -1)[:, :rest]
        return rows.reshape(moved_shape).movedim(0, axis)

    def expand(self, param: Tensor, shape: torch.Size | tuple[int, ...]) -> Tensor:
        """Broadcast a parameter tensor (:meth:`param_shape`) to the full `shape` of the data."""
        if self.kind == "per_tensor":
            return param.reshape(()).expand(shape)
        axis = self.check(shape)
        channels = shape[axis]
        if self.kind == "per_channel":
            view = [1] * len(shape)
            view[axis] = channels
            return param.reshape(view).expand(shape)
        k = self.group_length()
        full_rows = param.reshape(-1, 1).expand(-1, k)
        return self.unrows(full_rows, shape)


def as_granularity(value: Granularity | str | None, *, axis: int = 0, group_size: int | None = None) -> Granularity:
    """A :class:`Granularity` from itself, a kind name, or None (per tensor)."""
    if value is None:
        return Granularity.per_tensor()
    if isinstance(value, Granularity):
        return value
    kind = cast(GranularityKind, str(value))  # checked by Granularity itself
    return Granularity(kind, axis=axis, group_size=group_size if value == "per_group" else None)


def _row_param(param: Tensor | float, rows: Tensor) -> Tensor:
    """A parameter as a column ``[G, 1]`` matching `rows` ``[G, N]``."""
    p = torch.as_tensor(param, dtype=rows.dtype if rows.is_floating_point() else torch.float32, device=rows.device)
    return p.reshape(-1, 1)


def min_max(x: Tensor, granularity: Granularity | None = None) -> tuple[Tensor, Tensor]:
    """Per-granularity minimum and maximum of `x` (shaped as :meth:`Granularity.param_shape`).

    Per-group padding zeros are harmless: the range is widened to contain 0 anyway.
    """
    g = as_granularity(granularity)
    rows = g.rows(x.detach())
    lo, hi = rows.amin(dim=1), rows.amax(dim=1)
    shape = g.param_shape(x.shape)
    return lo.reshape(shape), hi.reshape(shape)


def choose_qparams(
    lo: Tensor | float,
    hi: Tensor | float,
    *,
    bits: int,
    symmetric: bool = True,
    eps: float = EPS,
) -> tuple[Tensor, Tensor]:
    """Scale and zero point for the range ``[lo, hi]`` (tensors of any matching shape).

    The range is widened to contain 0. Symmetric: ``s = max(|lo|, |hi|) / qmax``, ``z = 0``;
    asymmetric: ``s = (hi - lo) / (qmax - qmin)``, ``z = clamp(qmin - round(lo / s), qmin, qmax)``
    (Jacob et al. 2018, section 2.1). A zero range gets scale `eps` so that it dequantizes to 0.
    For 1 bit (binary) use :func:`binary_scale`; here 1 bit gives ``s = max(|lo|, |hi|)``.
    Returns ``(scale float32, zero_point int32)``.
    """
    bits = check_bits(bits)
    lo_t = torch.as_tensor(lo, dtype=torch.float32)
    hi_t = torch.as_tensor(hi, dtype=torch.float32)
    if torch.isnan(lo_t).any() or torch.isnan(hi_t).any() or torch.isinf(lo_t).any() or torch.isinf(hi_t).any():
        raise ValueError("choose_qparams: the observed range contains NaN or inf.")
    if (lo_t > hi_t).any():
        raise ValueError("choose_qparams: lo must be <= hi.")
    lo_t = torch.minimum(lo_t, torch.zeros_like(lo_t))
    hi_t = torch.maximum(hi_t, torch.zeros_like(hi_t))
    qmin, qmax = qrange(bits)
    if bits == 1 or symmetric:
        amax = torch.maximum(-lo_t, hi_t)
        scale = amax / qmax
        zero_point = torch.zeros_like(scale, dtype=torch.int32)
    else:
        scale = (hi_t - lo_t) / (qmax - qmin)
        scale = torch.where(scale > eps, scale, torch.full_like(scale, eps))
        zero_point = torch.clamp(qmin - torch.round(lo_t / scale), qmin, qmax).to(torch.int32)
    scale = torch.where(scale > eps, scale, torch.full_like(scale, eps))
    return scale.to(torch.float32), zero_point


def binary_scale(x: Tensor, granularity: Granularity | None = None) -> Tensor:
    """The L2-optimal scale of a sign quantizer, ``mean(|x|)`` per granularity (XNOR-Net, eq. 4)."""
    g = as_granularity(granularity)
    rows = g.rows(x.detach().abs())
    if g.kind == "per_group":
        # Padding zeros must not pull the mean down: count real elements per row.
        ones = g.rows(torch.ones_like(x))
        mean = rows.sum(dim=1) / ones.sum(dim=1).clamp(min=1)
    else:
        mean = rows.mean(dim=1)
    return mean.clamp(min=EPS).reshape(g.param_shape(x.shape)).to(torch.float32)


def quantize(
    x: Tensor,
    scale: Tensor | float,
    zero_point: Tensor | int,
    *,
    bits: int,
    granularity: Granularity | None = None,
) -> Tensor:
    """Integer codes ``clamp(round(x / s) + z, qmin, qmax)`` as int8 (1 bit: ``sign(x)`` in {-1, +1}).

    `scale` / `zero_point` have the shape :meth:`Granularity.param_shape` gives for `x`.
    Rounding is half to even, as ONNX ``QuantizeLinear``; ``x / s`` is a true division (not a
    multiplication by ``1 / s``) so that the codes match onnxruntime bit for bit.
    """
    bits = check_bits(bits)
    g = as_granularity(granularity)
    if bits == 1:
        codes = torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))
        return codes.to(torch.int8)
    qmin, qmax = qrange(bits)
    rows = g.rows(x)
    s = _row_param(scale, rows)
    z = _row_param(zero_point, rows)
    q = torch.clamp(torch.round(rows / s) + z, qmin, qmax)
    return g.unrows(q, x.shape).to(torch.int8)


def dequantize(
    q: Tensor,
    scale: Tensor | float,
    zero_point: Tensor | int = 0,
    *,
    granularity: Granularity | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Real values ``s * (q - z)`` (Jacob et al. 2018, eq. 1), as ONNX ``DequantizeLinear``."""
    g = as_granularity(granularity)
    rows = g.rows(q.to(dtype))
    s = _row_param(scale, rows)
    z = _row_param(zero_point, rows)
    return g.unrows((rows - z) * s, q.shape).to(dtype)


class _RoundSTE(torch.autograd.Function):
    """round() whose gradient is the identity (straight-through estimator, Bengio et al. 2013)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        return torch.round(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        return grad


def round_ste(x: Tensor) -> Tensor:
    """``round(x)`` in the forward pass, identity gradient in the backward pass."""
    return _RoundSTE.apply(x)


def sign_ste(x: Tensor) -> Tensor:
    """``sign(x)`` in {-1, +1} forward; gradient ``1{|x| <= 1}`` backward (Hubara et al. 2016)."""
    hard = torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))
    soft = x.clamp(-1.0, 1.0)
    return soft + (hard - soft).detach()


def fake_quantize(
    x: Tensor,
    scale: Tensor | float,
    zero_point: Tensor | int = 0,
    *,
    bits: int,
    granularity: Granularity | None = None,
) -> Tensor:
    """``dequantize(quantize(x))`` in the forward pass with the clipped straight-through gradient:
    d/dx = 1 where ``qmin <= round(x / s) + z <= qmax`` and 0 elsewhere. For 1 bit,
    ``s * sign(x)`` with gradient ``1{|x| <= s}``. Differentiable in `x` only (see :func:`lsq_fake_quantize`).
    """
    bits = check_bits(bits)
    g = as_granularity(granularity)
    rows = g.rows(x)
    s = _row_param(scale, rows).to(rows.dtype)
    if bits == 1:
        out = sign_ste(rows / s) * s
        return g.unrows(out, x.shape)
    qmin, qmax = qrange(bits)
    z = _row_param(zero_point, rows).to(rows.dtype)
    q = round_ste(rows / s) + z
    q = torch.clamp(q, qmin, qmax)
    return g.unrows((q - z) * s, x.shape)


def lsq_fake_quantize(
    x: Tensor,
    scale: Tensor,
    zero_point: Tensor | int = 0,
    *,
    bits: int,
    granularity: Granularity | None = None,
    grad_scale: float | None = None,
) -> Tensor:
    """LSQ fake quantization (Esser et al. 2020): like :func:`fake_quantize`, and differentiable in
    `scale` with the LSQ gradient ``round(v) - v`` (inside) / ``qmin - z`` or ``qmax - z``
    (clipped), multiplied by ``g = grad_scale`` (default ``1 / sqrt(N * qmax)``, N elements per
    scale). The zero point stays fixed. For 1 bit the output is ``s * sign(x)``, so
    ``d/ds = sign(x)``.
    """
    bits = check_bits(bits)
    g = as_granularity(granularity)
    rows = g.rows(x)
    qmin, qmax = qrange(bits)
    if grad_scale is None:
        grad_scale = 1.0 / math.sqrt(max(rows.shape[1], 1) * max(qmax, 1))
    s = scale.reshape(-1, 1)
    # Gradient scaling trick: value s, gradient g * ds.
    s = s * grad_scale + (s - s * grad_scale).detach()
    if bits == 1:
        return g.unrows(sign_ste(rows / s) * s, x.shape)
    z = torch.as_tensor(zero_point, dtype=rows.dtype, device=rows.device).reshape(-1, 1)
    v = torch.clamp(rows / s + z, qmin, qmax)
    q = round_ste(v)
    return g.unrows((q - z) * s, x.shape)


def sqnr_db(reference: Tensor, approx: Tensor) -> float:
    """Signal-to-quantization-noise ratio ``10 log10(sum(ref^2) / sum((ref - approx)^2))`` in dB.

    ``inf`` when the two are equal; ``-inf`` for a zero reference with a non-zero error.
    """
    ref = reference.detach().double().reshape(-1)
    err = ref - approx.detach().double().reshape(-1)
    signal = float((ref * ref).sum())
    noise = float((err * err).sum())
    if noise == 0.0:
        return math.inf
    if signal == 0.0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def quantize_tensor(
    x: Tensor,
    *,
    bits: int,
    symmetric: bool = True,
    granularity: Granularity | None = None,
    lo: Tensor | None = None,
    hi: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Round-to-nearest quantization of `x` with a min-max range (or the given `lo`/`hi`).

    Returns ``(codes int8, scale, zero_point)``; for 1 bit the scale is :func:`binary_scale`.
    """
    g = as_granularity(granularity)
    g.check(x.shape)
    if check_bits(bits) == 1:
        scale = binary_scale(x, g)
        zero_point = torch.zeros_like(scale, dtype=torch.int32)
    else:
        if lo is None or hi is None:
            lo, hi = min_max(x, g)
        scale, zero_point = choose_qparams(lo, hi, bits=bits, symmetric=symmetric)
    return quantize(x, scale, zero_point, bits=bits, granularity=g), scale, zero_point
