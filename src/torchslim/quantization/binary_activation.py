"""Binary activations for binarized layers (optional: ``Binarize(activations="binary")``).

The input of a binarized layer becomes ``x_b = beta * sign((x - tau) / beta)``:

* ``sign`` with a learnable threshold ``tau`` per input channel (ReActNet's RSign, Liu et al. 2020):
  after a ReLU every input is >= 0, so a plain ``sign(x)`` (BNN, Hubara et al. 2016) would be +1
  everywhere;
* one scale ``beta`` per layer (XNOR-Net's ``K``, Rastegari et al. 2016: the mean of ``|x - tau|``
  is the L2-optimal scale of a sign). One per layer, not per channel, so that it factors out of the
  dot product ``sum_i w_i x_i`` and the layer stays an XNOR-popcount times ``a * beta``;
* both initialised from calibration inputs and then trained;
* backward through Bi-Real's ApproxSign (Liu et al. 2018, eq. 4): ``F(v) = 2v + v^2`` for
  ``-1 <= v < 0``, ``2v - v^2`` for ``0 <= v < 1``, ``sign(v)`` elsewhere, so the gradient is
  ``2 - 2|v|`` inside ``|v| < 1`` and 0 outside.

With binary weights a layer then multiplies two sign patterns (XNOR and popcount on a bit-serial
kernel; zero padding of a convolution adds a third value, as in the papers). Bi-Real's real-valued
shortcuts add an identity path around each binary layer; they need layers whose input and output
shapes agree, which plain CNNs such as fmnist-cnn do not have, so torchslim does not insert them
(a model with residual blocks keeps its own real-valued shortcuts: only the layers' inputs are binary).

A layer with binary inputs is a ``BinaryInput<Class>`` subclass of its ``FakeQuant`` / ``Quantized``
class with an ``input_binarizer`` child (stored through the layer's other state), rebuilt from the
layout key :data:`BINARY_INPUT_KEY` when an artifact is loaded.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import Tensor, nn

from torchslim.core.errors import ModelError
from torchslim.quantization.functional import EPS

BINARY_INPUT_KEY = "binary_input"
"""Layout key of a layer with binary inputs: ``{"channels": C, "dim": d}``."""


def approx_sign(v: Tensor) -> Tensor:
    """Bi-Real's ApproxSign: ``sign(v)`` forward, gradient ``max(0, 2 - 2|v|)`` backward."""
    hard = torch.where(v >= 0, torch.ones_like(v), -torch.ones_like(v))
    inside = v.clamp(-1.0, 1.0)
    soft = 2 * inside - inside * inside.abs()  # 2v - v|v|: 2v + v^2 (v < 0), 2v - v^2 (v >= 0)
    return soft + (hard - soft).detach()


class SignActivation(nn.Module):
    """``beta * sign((x - tau) / beta)``: a threshold per channel along `dim`, one scale (see the module docstring)."""

    def __init__(self, channels: int, *, dim: int) -> None:
        super().__init__()
        self.dim = int(dim)
        self.threshold = nn.Parameter(torch.zeros(channels))
        self.scale = nn.Parameter(torch.ones(()))

    def _view(self, p: Tensor, x: Tensor) -> Tensor:
        shape = [1] * x.dim()
        shape[self.dim] = p.numel()
        return p.reshape(shape).to(x.dtype)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[self.dim] != self.threshold.numel():
            raise ModelError(
                f"binary activation: input has {x.shape[self.dim]} channels along dim {self.dim}, "
                f"expected {self.threshold.numel()}."
            )
        beta = self.scale.abs().clamp(min=EPS).to(x.dtype)
        v = (x - self._view(self.threshold, x)) / beta
        if self.training and torch.is_grad_enabled():
            return beta * approx_sign(v)
        return beta * torch.where(v >= 0, torch.ones_like(v), -torch.ones_like(v))  # exactly +-beta

    @torch.no_grad()
    def init_from(self, inputs: list[Tensor]) -> None:
        """``tau`` = the per-channel mean of `inputs`, ``beta`` = the mean of ``|x - tau|`` over all of them."""
        flat = torch.cat([x.detach().float().movedim(self.dim, -1).reshape(-1, x.shape[self.dim]) for x in inputs])
        tau = flat.mean(dim=0)
        self.threshold.copy_(tau)
        self.scale.copy_((flat - tau).abs().mean().clamp(min=EPS))

    @torch.no_grad()
    def clamp_(self) -> None:
        self.scale.abs_().clamp_(min=EPS)

    def extra_repr(self) -> str:
        return f"channels={self.threshold.numel()}, dim={self.dim}"


class BinaryInputMixin(nn.Module):
    """Mixed in before a ``FakeQuant`` / ``Quantized`` layer class: the input passes through
    ``input_binarizer`` first."""

    input_binarizer: SignActivation
    binary_input_base: type  # the layer class without binary inputs (set by binary_input_class)

    def forward(self, input: Tensor, *args: Any, **kwargs: Any) -> Tensor:  # noqa: A002
        result: Tensor = super().forward(self.input_binarizer(input), *args, **kwargs)
        return result

    def layout(self) -> dict[str, Any]:
        base: dict[str, Any] = super().layout()  # type: ignore[misc]  # QuantizedMixin.layout, after the mix
        binarizer = self.input_binarizer
        return {**base, BINARY_INPUT_KEY: {"channels": binarizer.threshold.numel(), "dim": binarizer.dim}}


@functools.cache
def binary_input_class(layer_cls: type) -> type:
    """The ``BinaryInput<layer class>`` subclass (cached per class)."""
    return type(
        f"BinaryInput{layer_cls.__name__}",
        (BinaryInputMixin, layer_cls),
        {"__module__": __name__, "binary_input_base": layer_cls},
    )


def input_channels(module: nn.Module) -> tuple[int, int]:
    """``(channels, dim)`` of the input of a Linear (last dim) or a convolution (dim 1)."""
    if isinstance(module, nn.Linear):
        return module.in_features, -1
    if isinstance(module, nn.modules.conv._ConvNd):
        return module.in_channels, 1
    raise ModelError(f"binary activations apply to Linear and Conv layers, not {type(module).__name__}.")


def add_binary_input(layer: nn.Module, binarizer: SignActivation | None = None) -> nn.Module:
    """Give `layer` (in place) binary inputs through `binarizer` (a new, untrained one when None)."""
    if isinstance(layer, BinaryInputMixin):
        raise ModelError(f"{type(layer).__name__} already has binary inputs.")
    if binarizer is None:
        channels, dim = input_channels(layer)
        binarizer = SignActivation(channels, dim=dim)
    layer_cls: type = type(layer)
    layer.__class__ = binary_input_class(layer_cls)
    layer.add_module("input_binarizer", binarizer)
    return layer


def take_binarizer(layer: nn.Module) -> SignActivation | None:
    """Remove and return `layer`'s input binarizer (the layer goes back to its own class); None if it has none."""
    if not isinstance(layer, BinaryInputMixin):
        return None
    binarizer = layer.input_binarizer
    del layer._modules["input_binarizer"]
    layer.__class__ = type(layer).binary_input_base
    return binarizer


def collect_inputs(model: nn.Module, names: list[str], batches: list[Any], call: Any) -> dict[str, list[Tensor]]:
    """The inputs of the layers `names` on `batches` (``call(model, batch)`` runs the model)."""
    seen: dict[str, list[Tensor]] = {n: [] for n in names}
    handles = []
    for name in names:

        def hook(module: nn.Module, args: tuple[Any, ...], acc: list[Tensor] = seen[name]) -> None:
            if args and isinstance(args[0], Tensor):
                acc.append(args[0].detach())

        handles.append(model.get_submodule(name).register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            for batch in batches:
                call(model, batch)
    finally:
        for handle in handles:
            handle.remove()
    return seen


__all__ = [
    "BINARY_INPUT_KEY",
    "BinaryInputMixin",
    "SignActivation",
    "add_binary_input",
    "approx_sign",
    "binary_input_class",
    "collect_inputs",
    "input_channels",
    "take_binarizer",
]
