"""Quantization: pure math first, composable quantizers, modules, one ``quantize`` recipe technique.

Layers of the package (each usable on its own):

* :mod:`~torchslim.quantization.functional` - `quantize`, `dequantize`, `fake_quantize`,
  `choose_qparams`, `lsq_fake_quantize`, one :class:`Granularity` (per tensor / channel / group).
* a weight quantizer is composed (:class:`~torchslim.quantization.quantizer.WeightQuantizer`) of
  **levels** (:mod:`~torchslim.quantization.levels`, registry ``LEVELS``: ``UniformLevels``) x
  **granularity** x **range estimator** (:mod:`~torchslim.quantization.ranges`, registry ``RANGES``:
  min-max, percentile, MSE, GPTQ, learned) x **gradient estimator**
  (:mod:`~torchslim.quantization.gradients`, registry ``GRADIENTS``: STE, clipped STE, LSQ).
* non-uniform levels and their techniques: :mod:`~torchslim.quantization.kmeans` (k-means codebook),
  :mod:`~torchslim.quantization.pow2` (power-of-two, APoT), :mod:`~torchslim.quantization.nonuniform`
  (techniques ``kmeans_quant`` and ``pow2_quant``), :mod:`torchslim.io.entropy` and
  :mod:`~torchslim.quantization.entropy_code` (technique ``entropy_code``: ANS-coded stored codes).
* :mod:`~torchslim.quantization.observers` - activation range observers.
* layers: :mod:`~torchslim.quantization.quantized` (``Quantized<Layer>``, a
  :class:`torchslim.core.layer.CompressedLayer`), :mod:`~torchslim.quantization.fake_quant`
  (``FakeQuant<Layer>``, LSQ for QAT), :mod:`~torchslim.quantization.build` (from float layers and back),
  :mod:`~torchslim.quantization.export_form` / :mod:`~torchslim.quantization.onnx_ops` (ONNX form),
  :mod:`~torchslim.quantization.stored` (packed artifact state), :mod:`~torchslim.quantization.packing`.
* the technique: :mod:`~torchslim.quantization.config` (:class:`Quantize` with ``weights``,
  ``activations`` and ``train`` sections; alias ``Uniform``), :mod:`~torchslim.quantization.plan`,
  :mod:`~torchslim.quantization.ptq`, :mod:`~torchslim.quantization.gptq`,
  :mod:`~torchslim.quantization.qat`, :mod:`~torchslim.quantization.report` and
  :mod:`~torchslim.quantization.technique` (the handler, registered as technique ``quantize``, and
  the ``quantize`` plan replay, registered in :mod:`torchslim.core.plans`).

Importing this package registers the technique and the plan replay.
"""

from torch import nn

from torchslim.quantization import binary_technique  # noqa: F401  (registers the binarize and ternarize techniques)
from torchslim.quantization.binary_config import Binarize, Ternarize
from torchslim.quantization.build import convert_fake_quant, dequantize_module, fake_quant_module, quantize_module
from torchslim.quantization.calibration import take_calibration
from torchslim.quantization.config import ActivationQuant, Quantize, Uniform, WeightQuant
from torchslim.quantization.entropy_code import EntropyCode
from torchslim.quantization.fake_quant import FakeQuantMixin, LSQQuantizer
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
from torchslim.quantization.gradients import GRADIENTS, STE, ClippedSTE, GradientEstimator, LSQGradient
from torchslim.quantization.kmeans import KMeansLevels
from torchslim.quantization.levels import LEVELS, Levels, UniformLevels, register_levels
from torchslim.quantization.nonuniform import KMeansQuant, PowerOfTwoQuant
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
from torchslim.quantization.pow2 import APoTLevels, PowerOfTwoLevels
from torchslim.quantization.quantized import QuantizedMixin
from torchslim.quantization.quantizer import WeightQuantizer
from torchslim.quantization.ranges import (
    RANGES,
    GPTQRange,
    LearnedRange,
    MinMaxRange,
    MSERange,
    PercentileRange,
    RangeEstimator,
    make_range,
)
from torchslim.quantization.specs import ActivationSpec, WeightSpec
from torchslim.quantization.streaming import quantize_checkpoint
from torchslim.quantization.technique import quantize_handler, register_plan_replays


def is_quantized(model: nn.Module) -> bool:
    """True when `model` holds at least one quantized or fake-quantized layer."""
    return any(isinstance(m, (QuantizedMixin, FakeQuantMixin)) for m in model.modules())


__all__ = [
    "Binarize",
    "Ternarize",
    "APoTLevels",
    "EntropyCode",
    "KMeansLevels",
    "KMeansQuant",
    "PowerOfTwoLevels",
    "PowerOfTwoQuant",
    "GRADIENTS",
    "LEVELS",
    "RANGES",
    "ActivationQuant",
    "ActivationSpec",
    "ClippedSTE",
    "FakeQuantMixin",
    "GPTQRange",
    "GradientEstimator",
    "Granularity",
    "LSQGradient",
    "LSQQuantizer",
    "LearnedRange",
    "Levels",
    "MSEObserver",
    "MSERange",
    "MinMaxObserver",
    "MinMaxRange",
    "MovingAverageMinMaxObserver",
    "Observer",
    "PercentileObserver",
    "PercentileRange",
    "Quantize",
    "QuantizedMixin",
    "RangeEstimator",
    "STE",
    "Uniform",
    "UniformLevels",
    "WeightQuant",
    "WeightQuantizer",
    "WeightSpec",
    "binary_scale",
    "choose_qparams",
    "convert_fake_quant",
    "dequantize",
    "dequantize_module",
    "fake_quant_module",
    "fake_quantize",
    "is_quantized",
    "lsq_fake_quantize",
    "make_observer",
    "make_range",
    "min_max",
    "pack_codes",
    "packed_nbytes",
    "qrange",
    "quantize",
    "quantize_checkpoint",
    "quantize_handler",
    "quantize_module",
    "quantize_tensor",
    "register_levels",
    "register_plan_replays",
    "sqnr_db",
    "take_calibration",
    "unpack_codes",
    "weight_qparams",
]
