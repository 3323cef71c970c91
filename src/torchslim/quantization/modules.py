"""Quantized and fake-quantized layers: one import place for the layer modules.

The layers live in small modules, one concern each:

* :mod:`~torchslim.quantization.specs` - :class:`WeightSpec`, :class:`ActivationSpec`;
* :mod:`~torchslim.quantization.quantized` - :class:`QuantizedMixin` (``Quantized<Class>``, the
  :class:`torchslim.core.layer.CompressedLayer` of quantization);
* :mod:`~torchslim.quantization.export_form` / :mod:`~torchslim.quantization.onnx_ops` - its ONNX form;
* :mod:`~torchslim.quantization.stored` - its packed artifact state;
* :mod:`~torchslim.quantization.fake_quant` - :class:`FakeQuantMixin`, :class:`LSQQuantizer` (QAT);
* :mod:`~torchslim.quantization.build` - building them from float layers and back.
"""

from torchslim.quantization.build import (
    convert_fake_quant,
    dequantize_module,
    empty_quantized,
    fake_quant_class,
    fake_quant_module,
    quantizable,
    quantize_module,
    quantized_class,
)
from torchslim.quantization.fake_quant import FakeQuantMixin, LSQQuantizer
from torchslim.quantization.onnx_ops import dynamic_fake_quantize, dynamic_quantize_reference
from torchslim.quantization.outliers import fold_split_weight, split_multipliers
from torchslim.quantization.quantized import QuantizedMixin
from torchslim.quantization.specs import ActivationSpec, WeightSpec

__all__ = [
    "ActivationSpec",
    "FakeQuantMixin",
    "LSQQuantizer",
    "QuantizedMixin",
    "WeightSpec",
    "convert_fake_quant",
    "dequantize_module",
    "dynamic_fake_quantize",
    "dynamic_quantize_reference",
    "empty_quantized",
    "fake_quant_class",
    "fake_quant_module",
    "fold_split_weight",
    "quantizable",
    "quantize_module",
    "quantized_class",
    "split_multipliers",
]
