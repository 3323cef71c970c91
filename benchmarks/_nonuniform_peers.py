"""The peers of benchmarks/nonuniform.py, on the same trained weights as torchslim's rows.

* coremltools (``coremltools.optimize.torch``): k-means palettization after training
  (``PostTrainingPalettizer``) and during training (``DKMPalettizer``, trained through torchslim's
  own loop so the optimizer, data order and step count are those of the torchslim row). Accuracy is
  measured in PyTorch on the palettized model; bytes two ways: the ``.mlpackage`` coremltools writes
  (``ct.convert`` + ``save`` work without macOS; Core ML stores the lookup tables and unpalettized
  tensors in fp16 by default) and a count of fp32 codebooks + indices packed at b bits + fp32 biases.
* Brevitas: binary and ternary weight quantizers (``brevitas.nn.QuantConv2d`` / ``QuantLinear``)
  with the first and last layer at 8 bits (``Int8WeightPerChannelFloat``), as torchslim's recipe.
  Two set-ups: the quantizers as shipped (``SignedBinaryWeightPerTensorConst`` /
  ``SignedTernaryWeightPerTensorConst``, a constant per-tensor scale of 0.1) and a per-output-channel
  scale learned from the mean |w| (``PARAMETER_FROM_STATS`` + ``StatsOp.AVE``: XNOR-Net / TWN style).
  Bytes: the safetensors file of Brevitas' state_dict (it keeps float weights) and the ideal packed
  size (1 or 2 bits per weight, fp32 scales and biases), labelled as computed.

Everything here is a plain function of a model, so tests/benchmarks/test_nonuniform_bench.py can
run it on a tiny random model.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import math
import tempfile
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

COREML_LUT_SUFFIX = "_COREML_/weight/lut"


# ------------------------------------------------------------------------------------------------
# bytes


def tree_bytes(path: Path) -> int:
    """Bytes of a file, or of every file under a folder."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def save_state(state: dict[str, torch.Tensor], path: Path) -> int:
    """Write `state` as a safetensors file (tensors made contiguous, shared storage split); its bytes."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state.items() if isinstance(v, torch.Tensor)}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path))
    return path.stat().st_size


def state_sha256(model: nn.Module) -> str:
    """A digest of the model's tensors (names, shapes, bytes): rows that print it ran on the same weights."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def weight_layers(model: nn.Module) -> list[str]:
    """Names of the Conv2d / Linear layers, in module order (first = input side)."""
    return [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def packed_bits_bytes(count: int, bits: int) -> int:
    return math.ceil(count * bits / 8)


# ------------------------------------------------------------------------------------------------
# coremltools


def quiet_coremltools() -> None:
    """coremltools logs every k-means block at INFO and warns about untested torch versions."""
    import coremltools  # noqa: F401 - its import configures the loggers silenced below

    for name in list(logging.root.manager.loggerDict):
        if name.startswith("coremltools"):
            logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", module="coremltools")


def coreml_module_config(bits: int, *, granularity: str = "per_tensor") -> dict[str, Any]:
    return {"n_bits": bits, "granularity": granularity}


def coreml_ptq(model: nn.Module, bits: int) -> nn.Module:
    """coremltools ``PostTrainingPalettizer``: k-means with 2**bits centroids per tensor, every
    Conv2d / Linear; a copy (the input is left as it was)."""
    quiet_coremltools()
    from coremltools.optimize.torch.palettization import PostTrainingPalettizer, PostTrainingPalettizerConfig

    config = PostTrainingPalettizerConfig.from_dict({"global_config": coreml_module_config(bits)})
    palettized = PostTrainingPalettizer(copy.deepcopy(model).eval(), config).compress()
    return palettized.eval()


def coreml_dkm(model: nn.Module, bits: int, loader: Iterable[Any], *, train_config: Any, seed: int) -> nn.Module:
    """coremltools ``DKMPalettizer`` (differentiable k-means, Cho et al. 2022) trained with
    `train_config` through ``torchslim.train.train``; every Conv2d / Linear palettized
    (``weight_threshold=0``, the level torchslim's k-means works at); palettization on from step 0."""
    quiet_coremltools()
    from coremltools.optimize.torch.palettization import DKMPalettizer, DKMPalettizerConfig

    from torchslim.train import TrainHook, train

    class PalettizerStep(TrainHook):
        def on_step_end(self, state: Any) -> None:
            palettizer.step()

    config = DKMPalettizerConfig.from_dict({"global_config": {"n_bits": bits, "weight_threshold": 0, "milestone": 0}})
    palettizer = DKMPalettizer(copy.deepcopy(model), config)
    prepared = palettizer.prepare()
    palettizer.step()  # milestone 0: k-means on from the first step
    train(prepared, loader, config=train_config, hooks=[PalettizerStep()], seed=seed, quiet=True)
    return palettizer.finalize().eval()


def coreml_counted_bytes(model: nn.Module, bits: int) -> dict[str, int]:
    """Bytes of a palettized model counted tensor by tensor: fp32 lookup tables, indices packed at
    `bits` bits, everything else (biases, unpalettized weights) fp32."""
    state = model.state_dict()
    luts = {k[: -len(COREML_LUT_SUFFIX)] + "weight": v for k, v in state.items() if k.endswith(COREML_LUT_SUFFIX)}
    codebooks = indices = other = 0
    for name, tensor in state.items():
        if "_COREML_" in name:
            continue
        if name in luts:
            codebooks += luts[name].numel() * 4
            indices += packed_bits_bytes(tensor.numel(), bits)
        elif tensor.is_floating_point():
            other += tensor.numel() * 4
    return {
        "codebooks": codebooks,
        "indices": indices,
        "other_fp32": other,
        "total": codebooks + indices + other,
        "palettized_layers": len(luts),
    }


def coreml_palette_sizes(model: nn.Module) -> dict[str, int]:
    """Distinct weight values per palettized layer (at most 2**bits each)."""
    state = model.state_dict()
    prefixes = [k[: -len(COREML_LUT_SUFFIX)] for k in state if k.endswith(COREML_LUT_SUFFIX)]
    return {p.rstrip("."): int(torch.unique(state[p + "weight"]).numel()) for p in prefixes}


def coreml_package_bytes(model: nn.Module, example: torch.Tensor) -> tuple[int | None, str]:
    """Bytes of the ``.mlpackage`` coremltools writes for `model` (traced on `example`; iOS18 ML
    program, which keeps palettized weights as lookup tables), and a note; None when it fails."""
    quiet_coremltools()
    try:
        import coremltools as ct

        with torch.no_grad():
            traced = torch.jit.trace(copy.deepcopy(model).eval(), example)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mlmodel = ct.convert(
                traced,
                inputs=[ct.TensorType(shape=tuple(example.shape))],
                convert_to="mlprogram",
                minimum_deployment_target=ct.target.iOS18,
            )
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.mlpackage"
            mlmodel.save(str(path))
            return tree_bytes(path), "coremltools .mlpackage on disk (fp16 LUTs/biases, Core ML's default)"
    except Exception as exc:  # noqa: BLE001 - the counted bytes still stand
        return None, f"ct.convert failed: {type(exc).__name__}: {str(exc)[:200]}"


# ------------------------------------------------------------------------------------------------
# Brevitas


def brevitas_weight_quant(kind: str, variant: str) -> Any:
    """The Brevitas weight quantizer: `kind` "binary" / "ternary" / "int8"; `variant` "shipped" (the
    class as Brevitas ships it) or "per_channel" (learned per-channel scale initialised from mean |w|)."""
    from brevitas.core.function_wrapper import TensorClamp
    from brevitas.inject.enum import ScalingImplType, ScalingPerOutputType, StatsOp
    from brevitas.quant import (
        Int8WeightPerChannelFloat,
        SignedBinaryWeightPerTensorConst,
        SignedTernaryWeightPerTensorConst,
    )

    if kind == "int8":
        return Int8WeightPerChannelFloat
    shipped = {"binary": SignedBinaryWeightPerTensorConst, "ternary": SignedTernaryWeightPerTensorConst}
    if kind not in shipped or variant not in ("shipped", "per_channel"):
        raise ValueError(f"brevitas_weight_quant: kind {kind!r} / variant {variant!r} unknown")
    if variant == "shipped":
        return shipped[kind]
    return shipped[kind].let(
        scaling_impl_type=ScalingImplType.PARAMETER_FROM_STATS,
        scaling_stats_op=StatsOp.AVE,
        scaling_per_output_type=ScalingPerOutputType.CHANNEL,
        tensor_clamp_impl=TensorClamp,
    )


def _quant_layer(layer: nn.Module, weight_quant: Any) -> nn.Module:
    import brevitas.nn as qnn

    bias = layer.bias is not None
    if isinstance(layer, nn.Conv2d):
        new: nn.Module = qnn.QuantConv2d(
            layer.in_channels,
            layer.out_channels,
            layer.kernel_size,
            stride=layer.stride,
            padding=layer.padding,
            dilation=layer.dilation,
            groups=layer.groups,
            bias=bias,
            weight_quant=weight_quant,
        )
    else:
        assert isinstance(layer, nn.Linear)
        new = qnn.QuantLinear(layer.in_features, layer.out_features, bias=bias, weight_quant=weight_quant)
    with torch.no_grad():
        new.weight.copy_(layer.weight)
        if bias:
            new.bias.copy_(layer.bias)
    return new


def brevitas_model(model: nn.Module, kind: str, variant: str, *, keep_8bit: int = 1) -> nn.Module:
    """A copy of `model` whose Conv2d / Linear layers are Brevitas layers: the first and last
    `keep_8bit` layers 8-bit per channel, the others `kind` ("binary" / "ternary") weights."""
    work = copy.deepcopy(model)
    names = weight_layers(work)
    edge = set(names[:keep_8bit] + names[len(names) - keep_8bit :]) if keep_8bit else set()
    for name in names:
        weight_quant = brevitas_weight_quant("int8" if name in edge else kind, variant)
        work.set_submodule(name, _quant_layer(work.get_submodule(name), weight_quant))
    # the learned scales initialise from the weights on first use: do it now, outside autograd
    with torch.no_grad():
        for module in work.modules():
            if hasattr(module, "quant_weight"):
                module.quant_weight()
    return work


def brevitas_layer_values(model: nn.Module) -> dict[str, dict[str, int]]:
    """Per Brevitas layer: its bit width and the most distinct weight values in one output channel."""
    out = {}
    with torch.no_grad():
        for name, module in model.named_modules():
            if hasattr(module, "quant_weight"):
                qw = module.quant_weight()
                values = qw.value.reshape(qw.value.shape[0], -1)
                most = max(int(torch.unique(row).numel()) for row in values)
                out[name] = {"bits": int(qw.bit_width), "values_per_channel": most}
    return out


def brevitas_ideal_bytes(model: nn.Module) -> dict[str, int]:
    """Computed, not written: each quantized weight at its bit width packed, fp32 scales and biases,
    fp32 for any other tensor (Brevitas has no packed on-disk format of its own)."""
    weights = scales = other = 0
    quant_weights = set()
    with torch.no_grad():
        for name, module in model.named_modules():
            if hasattr(module, "quant_weight"):
                qw = module.quant_weight()
                weights += packed_bits_bytes(qw.value.numel(), int(qw.bit_width))
                scales += int(torch.as_tensor(qw.scale).numel()) * 4
                quant_weights.add(f"{name}.weight" if name else "weight")
    for name, tensor in model.state_dict().items():
        if name in quant_weights or "scaling_impl" in name or not tensor.is_floating_point():
            continue
        other += tensor.numel() * 4
    return {"weights": weights, "scales": scales, "other_fp32": other, "total": weights + scales + other}


def brevitas_state_file_bytes(model: nn.Module, path: Path) -> int:
    """Bytes of Brevitas' own state_dict written as safetensors (float weights + learned scales)."""
    return save_state(model.state_dict(), path)
