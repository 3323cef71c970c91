"""The fake-quantized layer of quantization-aware training: ``FakeQuant<Class>``.

Its float weight (``weight_float``) is served as ``self.weight`` through an :class:`LSQQuantizer`
(learned step size, Esser et al. 2020); its input, with static quantization, through another one.
:func:`~torchslim.quantization.build.convert_fake_quant` turns it into the integer
``Quantized<Class>`` layer it simulates after training.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from torchslim.quantization.functional import Granularity, check_bits
from torchslim.quantization.gradients import GradientEstimator, LSQGradient
from torchslim.quantization.onnx_ops import dynamic_fake_quantize
from torchslim.quantization.specs import ActivationSpec, WeightSpec


class LSQQuantizer(nn.Module):
    """Fake quantizer with a learned step size (LSQ, Esser et al. 2020) and a fixed zero point.

    ``scale`` is a parameter of :meth:`Granularity.param_shape`; the gradient estimator
    (:class:`~torchslim.quantization.gradients.LSQGradient` by default) scales its gradient by
    ``1 / sqrt(N * qmax)``. Kept positive by :meth:`clamp_` after each optimizer step.
    """

    zero_point: Tensor

    def __init__(
        self,
        scale: Tensor,
        zero_point: Tensor,
        *,
        bits: int,
        granularity: Granularity,
        learn: bool = True,
        gradient: GradientEstimator | None = None,
    ) -> None:
        super().__init__()
        self.bits = check_bits(bits)
        self.granularity = granularity
        self.gradient: GradientEstimator = gradient or LSQGradient()
        self.scale = nn.Parameter(scale.detach().clone().float(), requires_grad=learn)
        self.register_buffer("zero_point", zero_point.detach().clone().to(torch.int32))

    def forward(self, x: Tensor) -> Tensor:
        return self.gradient.fake_quantize(x, self.scale, self.zero_point, bits=self.bits, granularity=self.granularity)

    @torch.no_grad()
    def clamp_(self, eps: float = 1e-8) -> None:
        self.scale.abs_().clamp_(min=eps)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, {self.granularity.kind}"


class FakeQuantMixin(nn.Module):
    """Mixed into ``FakeQuant<Class>`` before the float class: ``self.weight`` is the LSQ
    fake-quantized ``weight_float`` and the input goes through ``input_quantizer`` when there is one."""

    _torchslim_float_class: ClassVar[type[nn.Module]]
    weight_spec: WeightSpec
    act_spec: ActivationSpec | None
    weight_float: nn.Parameter
    weight_quantizer: LSQQuantizer
    input_quantizer: LSQQuantizer

    @property
    def weight(self) -> Tensor:
        return self.weight_quantizer(self.masked_weight_float())

    def masked_weight_float(self) -> Tensor:
        """``weight_float``, times the pruning mask the layer came with (``weight_keep``), so QAT never
        revives a pruned weight (its gradient through the mask is zero)."""
        keep = self._buffers.get("weight_keep")
        w = self.weight_float
        return w if keep is None else w * keep

    @property
    def bias(self) -> Tensor | None:
        """The float bias; with static input quantization rounded (straight-through) to the int32
        grid ``s_in * s_w`` an integer kernel uses, exactly as the converted layer does."""
        b = self._parameters.get("bias_float")
        if b is None or self.act_spec is None or self.act_spec.mode != "static":
            return b
        if not self.weight_spec.granularity.per_output_channel(self.weight_float.shape):
            return b
        s_w = self.weight_quantizer.scale.detach().abs().clamp(min=1e-8)
        s_in = self.input_quantizer.scale.detach().abs().clamp(min=1e-8)
        step = (s_in * s_w).reshape(-1).expand(b.shape[0])
        return b + (torch.round(b / step) * step - b).detach()

    def forward(self, input: Tensor, *args: Any, **kwargs: Any) -> Tensor:  # noqa: A002
        spec = self.act_spec
        if spec is not None and isinstance(input, Tensor) and input.is_floating_point():
            if spec.mode == "dynamic":
                input = dynamic_fake_quantize(input, spec.granularity == "per_token")
            else:
                input = self.input_quantizer(input)
        result: Tensor = super().forward(input, *args, **kwargs)
        return result

    def clamp_scales_(self) -> None:
        self.weight_quantizer.clamp_()
        if "input_quantizer" in self._modules:
            self.input_quantizer.clamp_()


__all__ = ["FakeQuantMixin", "LSQQuantizer"]
