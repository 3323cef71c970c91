"""Quantization: pure math first, modules second, one ``quantize`` recipe technique.

Layers of the package (each usable on its own):

* :mod:`~torchslim.quantization.functional` - `quantize`, `dequantize`, `fake_quantize`,
  `choose_qparams`, `lsq_fake_quantize`, one :class:`Granularity` (per tensor / channel / group).
* :mod:`~torchslim.quantization.observers` - min-max, moving-average, percentile, MSE observers.
* :mod:`~torchslim.quantization.modules` - ``Quantized<Layer>`` (int codes, static or dynamic input
  quantization, ONNX QDQ export, packed artifact state) and ``FakeQuant<Layer>`` (LSQ, for QAT).
* :mod:`~torchslim.quantization.ptq` / :mod:`~torchslim.quantization.gptq` /
  :mod:`~torchslim.quantization.qat` - post-training quantization with calibration, bias correction
  and GPTQ; quantization-aware training through :func:`torchslim.train.train`.
* :mod:`~torchslim.quantization.packing` - sub-byte packing (two int4 codes per byte).
* :mod:`~torchslim.quantization.technique` - the :class:`Quantize` config (alias ``Uniform``) and its
  handler, registered as technique ``quantize``; the ``quantize`` plan replay for artifacts.

Importing this package registers the technique and the plan replay.
"""

from torchslim.quantization.calibration import take_calibration
from torchslim.quantization.functional import (
    Granularity,
    binary_scale,
    choose_qparams,
    dequantize,
    fake_quantize,
    lsq_fake_quantize,
    min_max,
    qrange,
    quantize,
    quantize_tensor,
    sqnr_db,
)
from torchslim.quantization.modules import (
    ActivationSpec,
    FakeQuantMixin,
    LSQQuantizer,
    QuantizedMixin,
    WeightSpec,
    convert_fake_quant,
    dequantize_module,
    fake_quant_module,
    quantize_module,
)
from torchslim.quantization.observers import (
    MinMaxObserver,
    MovingAverageMinMaxObserver,
    MSEObserver,
    Observer,
    PercentileObserver,
    make_observer,
    weight_qparams,
)
from torchslim.quantization.packing import pack_codes, packed_nbytes, unpack_codes
from torchslim.quantization.technique import Quantize, Uniform, quantize_handler, register_plan_replays

register_plan_replays()


def is_quantized(model) -> bool:  # type: ignore[no-untyped-def]
    """True when `model` holds at least one quantized or fake-quantized layer."""
    return any(isinstance(m, (QuantizedMixin, FakeQuantMixin)) for m in model.modules())


__all__ = [
    "ActivationSpec", "FakeQuantMixin", "Granularity", "LSQQuantizer", "MSEObserver", "MinMaxObserver",
    "MovingAverageMinMaxObserver", "Observer", "PercentileObserver", "Quantize", "QuantizedMixin", "Uniform",
    "WeightSpec", "binary_scale", "choose_qparams", "convert_fake_quant", "dequantize", "dequantize_module",
    "fake_quant_module", "fake_quantize", "is_quantized", "lsq_fake_quantize", "make_observer", "min_max",
    "pack_codes", "packed_nbytes", "qrange", "quantize", "quantize_handler", "quantize_module", "quantize_tensor",
    "sqnr_db", "take_calibration", "unpack_codes", "weight_qparams",
]
