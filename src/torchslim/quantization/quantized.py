"""The quantized layer: ``Quantized<Class>``, built from the float layer it replaces.

:func:`~torchslim.quantization.build.quantize_module` turns a ``Linear`` / ``ConvNd`` /
``Embedding`` (or any subclass whose ``forward`` reads ``self.weight`` / ``self.bias``, such as
EfficientNet's same-padding convolutions) into an instance of a generated subclass
``Quantized<Class>`` of :class:`QuantizedMixin` and the float class, which keeps the original
``forward``. The layer

* stores the weight as int8 **codes** (``weight_q``) with ``weight_scale`` / ``weight_zero_point``
  (any granularity) and serves ``self.weight`` as their dequantization (cached);
* optionally quantizes its **input**: ``static`` (a calibrated scale and zero point, simulated with
  :func:`~torchslim.quantization.functional.fake_quantize`) or ``dynamic`` (uint8 range of each
  input at run time, exactly ONNX ``DynamicQuantizeLinear``);
* with static input quantization serves ``self.bias`` rounded to the int32 grid of step
  ``s_in * s_w``, which is what an integer kernel adds (Jacob et al. 2018, section 2.4);
* implements the layer contract :class:`torchslim.core.layer.CompressedLayer`: packed stored state
  (:mod:`~torchslim.quantization.stored`), effective weight, storage bits, plan layout and its ONNX
  form (:mod:`~torchslim.quantization.export_form`: ``DequantizeLinear`` on int8 initializers,
  ``QuantizeLinear`` / ``DequantizeLinear`` on inputs and an int32 bias, so onnxruntime fuses
  integer kernels such as ``QLinearConv``, ``QGemm`` and ``DynamicQuantizeMatMul``).
"""

from __future__ import annotations

from typing import Any, ClassVar, cast

import torch
from torch import Tensor, nn

from torchslim.core.layer import OnnxForm, StorageBits
from torchslim.quantization import export_form, stored
from torchslim.quantization.functional import dequantize, fake_quantize
from torchslim.quantization.levels import is_affine
from torchslim.quantization.onnx_ops import DQExport, QDQExport, dynamic_fake_quantize, is_fx_tracing
from torchslim.quantization.outliers import fold_split_weight
from torchslim.quantization.specs import ActivationSpec, WeightSpec


class QuantizedMixin(nn.Module):
    """Mixed into ``Quantized<Class>`` before the float class; see the module docstring.

    Never instantiated directly: :func:`~torchslim.quantization.build.quantize_module` sets the
    attributes declared here on a copy of a float layer.
    """

    _torchslim_float_class: ClassVar[type[nn.Module]]
    weight_spec: WeightSpec
    act_spec: ActivationSpec | None
    weight_q: Tensor
    weight_scale: Tensor
    weight_zero_point: Tensor
    input_scale: Tensor
    input_zero_point: Tensor
    output_scale: Tensor
    output_zero_point: Tensor
    input_split: Tensor
    _split_mult_main: Tensor
    _split_mult_extra: Tensor
    _onnx_bias_q: Tensor
    _onnx_bias_scale: Tensor
    _onnx_split_gather: Tensor
    _pt2e_weight_scale: Tensor
    _pt2e_weight_zp: Tensor

    # -- weights -----------------------------------------------------------------------------
    def _dequantize(self, wq: Tensor, scale: Tensor, zp: Tensor) -> Tensor:
        spec = self.weight_spec
        if spec.levels == "uniform":
            return dequantize(wq, scale, zp, granularity=spec.granularity)
        return spec.make_levels().dequantize(wq, scale, zp, granularity=spec.granularity)

    def _dequantized_weight(self) -> Tensor:
        wq, scale, zp = self.weight_q, self.weight_scale, self.weight_zero_point
        if is_fx_tracing() or torch.compiler.is_exporting() or not isinstance(wq, Tensor):
            return self._dequantize(wq, scale, zp)
        if scale.requires_grad and torch.is_grad_enabled():
            # training the levels (k-means centroid fine-tuning): differentiable, not cached
            return self._dequantize(wq, scale, zp)
        key = (wq.data_ptr(), wq._version, scale.data_ptr(), scale._version, zp.data_ptr(), zp._version, wq.device)
        cache = self.__dict__.get("_weight_cache")
        if cache is None or cache[0] != key:
            with torch.no_grad():
                w = self._dequantize(wq, scale, zp)
            self.__dict__["_weight_cache"] = (key, w)
            return w
        return cache[1]

    def effective_weight(self) -> Tensor:
        """The dequantized weight of the float layer this layer stands for (split outlier channels
        folded back)."""
        w = self._dequantized_weight()
        split = self._buffers.get("input_split")
        return w if split is None else fold_split_weight(w, split)

    def stored_weight(self) -> Tensor:
        """The weight codes that are stored (the artifact and parameter counts): without the
        repeated columns of split outlier channels, which are copies of stored ones."""
        split = self._buffers.get("input_split")
        wq = self.weight_q
        return wq if split is None else wq[:, : wq.shape[1] - split.numel()]

    def storage_bits(self) -> StorageBits:
        """Bits per stored weight code; bits per input element (None when the input stays float)."""
        return StorageBits(
            weight=self.weight_spec.bits, activation=self.act_spec.bits if self.act_spec is not None else None
        )

    @property
    def weight(self) -> Tensor:
        if self.__dict__.get("_pt2e_export"):
            return export_form.pt2e_weight(self)
        if self.__dict__.get("_onnx_export") and self.integer_export():
            g = self.weight_spec.granularity
            axis = -1 if g.kind == "per_tensor" else g.check(self.weight_q.shape)
            zp = self.weight_zero_point.to(torch.int8)
            return DQExport.apply(self.weight_q, self.weight_scale, zp, axis)
        return self._dequantized_weight()

    def integer_export(self) -> bool:
        """True when the ONNX form keeps integer weights (``DequantizeLinear`` on the codes): affine
        levels, not per group. Other levels (k-means, power of two) export their dequantized weight."""
        return self.weight_spec.granularity.kind != "per_group" and is_affine(self.weight_spec.make_levels())

    def bias_scale(self) -> Tensor | None:
        """``s_in * s_w`` per output channel, when the bias can live on an int32 grid."""
        if self.act_spec is None or self.act_spec.mode != "static":
            return None
        if not self.weight_spec.granularity.per_output_channel(self.weight_q.shape):
            return None
        out_channels = self.weight_q.shape[0]
        return (self.input_scale * self.weight_scale).reshape(-1).expand(out_channels).contiguous()

    @property
    def bias(self) -> Tensor | None:
        b = self._parameters.get("bias_float")
        if b is None:
            return None
        if "_pt2e_bias" in self._buffers:
            return self._buffers["_pt2e_bias"]
        bias_scale = self.bias_scale()
        if bias_scale is None:
            return b
        if self.__dict__.get("_onnx_export") and "_onnx_bias_q" in self._buffers:
            return DQExport.apply(self._onnx_bias_q, self._onnx_bias_scale, None, 0)
        # The value an integer kernel adds; gradient still flows to the float bias (STE).
        rounded = torch.round(b / bias_scale) * bias_scale
        return b + (rounded - b).detach()

    # -- inputs and forward ------------------------------------------------------------------
    def quantize_input(self, x: Tensor) -> Tensor:
        spec = self.act_spec
        if spec is None or not isinstance(x, Tensor) or not x.is_floating_point():
            return x
        if spec.mode == "dynamic":
            if self.__dict__.get("_pt2e_export") and spec.granularity == "per_token":
                return export_form.pt2e_dynamic_input(x)
            return dynamic_fake_quantize(x, spec.granularity == "per_token")
        if self.__dict__.get("_pt2e_export"):
            return cast(Tensor, export_form.pt2e_activation(self, x, "input"))
        if self.__dict__.get("_onnx_export"):
            return QDQExport.apply(x, self.input_scale, self.input_zero_point, spec.bits)
        return fake_quantize(x, self.input_scale, self.input_zero_point.to(torch.int32), bits=spec.bits)

    def _split_input(self, x: Tensor) -> Tensor:
        """Outlier channel splitting of the input: ``[x / m, x[split] / m[split]]`` (see
        :func:`~torchslim.quantization.outliers.split_multipliers`)."""
        return torch.cat(
            [x * self._split_mult_main, x.index_select(-1, self.input_split) * self._split_mult_extra], dim=-1
        )

    def forward(self, input: Tensor, *args: Any, **kwargs: Any) -> Tensor:  # noqa: A002
        out = self._forward_layer(input, *args, **kwargs)
        if "output_scale" in self._buffers and isinstance(out, Tensor):
            # an int8 output (the layer feeds no quantized input, e.g. a residual Add): exported as
            # QuantizeLinear -> DequantizeLinear after the layer, so onnxruntime fuses an integer kernel
            if self.__dict__.get("_pt2e_export"):
                return cast(Tensor, export_form.pt2e_activation(self, out, "output"))
            if self.__dict__.get("_onnx_export"):
                return QDQExport.apply(out, self.output_scale, self.output_zero_point, 8)
            return fake_quantize(out, self.output_scale, self.output_zero_point.to(torch.int32), bits=8)
        return out

    def float_forward(self, input: Tensor, *args: Any, **kwargs: Any) -> Tensor:  # noqa: A002
        """The float class's ``forward`` (it reads ``self.weight`` / ``self.bias``)."""
        result: Tensor = super().forward(input, *args, **kwargs)
        return result

    def _forward_layer(self, input: Tensor, *args: Any, **kwargs: Any) -> Tensor:  # noqa: A002
        if "_onnx_split_gather" in self._buffers and isinstance(input, Tensor):
            # export of a split per-tensor dynamic layer: scale, quantize, then copy the uint8 codes
            return export_form.dynamic_linear_export(
                self, input * self._split_mult_main, gather=self._onnx_split_gather
            )
        if "input_split" in self._buffers and isinstance(input, Tensor):
            input = self._split_input(input)
        exporting = bool(self.__dict__.get("_onnx_export"))
        if exporting and export_form.embedding_exports(self):
            return export_form.embedding_export(self, input)
        if "_onnx_weight_t_q" in self._buffers and self.act_spec is not None and self.act_spec.mode == "dynamic":
            return export_form.dynamic_linear_export(self, input)
        if "_onnx_shift_weight_q" in self._buffers and isinstance(input, Tensor):
            return export_form.shifted_conv_export(self, input)
        pt2e = bool(self.__dict__.get("_pt2e_export"))
        if (
            exporting
            and not pt2e
            and self.act_spec is not None
            and isinstance(self, nn.Linear)
            and isinstance(input, Tensor)
            and input.dim() > 2
        ):
            # ONNX: Gemm (2-D) keeps the DequantizeLinear weight directly on the compute op, which
            # onnxruntime needs to fuse QGemm; MatMul on a transposed weight would not fuse. A
            # weight-only layer has nothing to fuse and stays a MatMul on the token tensor: OpenVINO
            # runs it as an int8-weight FullyConnected without the reshapes (MiniLM-L6 3-5% faster).
            lead = input.shape[:-1]
            flat = self.float_forward(self.quantize_input(input.reshape(-1, input.shape[-1])), *args, **kwargs)
            return flat.reshape(*lead, flat.shape[-1])
        return self.float_forward(self.quantize_input(input), *args, **kwargs)

    # -- the rest of the layer contract (torchslim.core.layer.CompressedLayer) ---------------
    def onnx_form(self, enabled: bool, *, dialect: str = "onnx") -> OnnxForm:
        """Switch to (or back from) the export form of `dialect` (``"onnx"``, or ``"pt2e"`` for
        ``torch.export`` / ExecuTorch); per-group and non-affine (k-means, power-of-two) weights stay
        float in the graph: smaller on disk, not faster in the runtime."""
        export_form.set_export_form(self, enabled, dialect=dialect)
        spec = self.act_spec
        details: dict[str, Any] = {
            "weight_bits": self.weight_spec.bits,
            "granularity": self.weight_spec.granularity.kind,
            "activation": spec.to_dict() if spec else None,
        }
        if self.weight_spec.levels != "uniform":
            details["levels"] = self.weight_spec.levels
        return OnnxForm(integer_weights=self.integer_export(), details=details)

    def layout(self) -> dict[str, Any]:
        """The JSON description the ``quantize`` plan replay needs to rebuild this layer's structure."""
        return {
            "class": self._torchslim_float_class.__name__,
            "weight": self.weight_spec.to_dict(),
            "activation": self.act_spec.to_dict() if self.act_spec else None,
            "weight_shape": list(self.weight_q.shape),
            "has_bias": self._parameters.get("bias_float") is not None,
            "split_channels": int(self.input_split.numel()) if "input_split" in self._buffers else 0,
            "output_quantized": "output_scale" in self._buffers,
        }

    def stored_state(self, prefix: str) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """Packed weight codes, scales, zero points (only when asymmetric), bias, input and output
        quantization parameters, and any other state of the layer's children."""
        return stored.stored_state(self, prefix)

    def load_stored_state(self, prefix: str, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
        """Inverse of :meth:`stored_state`; checks every shape against this layer."""
        stored.load_stored_state(self, prefix, tensors, meta)
        self.__dict__.pop("_weight_cache", None)

    def extra_repr(self) -> str:
        base = super().extra_repr()
        g = self.weight_spec.granularity
        act = f", act={self.act_spec.mode}{self.act_spec.bits}" if self.act_spec else ""
        split = self._buffers.get("input_split")
        split_note = f", split_channels={split.numel()}" if split is not None else ""
        levels = "" if self.weight_spec.levels == "uniform" else f" {self.weight_spec.levels}"
        return f"{base}, w{self.weight_spec.bits}{levels} {g.kind}{act}{split_note}"


__all__ = ["QuantizedMixin"]
