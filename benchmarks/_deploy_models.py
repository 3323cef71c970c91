"""Models and peer tool chains of ``deploy_speed.py``: each builder returns the thing that is timed.

* :func:`resnet56` (CIFAR-style, 3 stages x 9 basic blocks, widths 16/32/64) and :func:`resnet18`
  (64-512 channels, 3x3 stem without max-pool, for 32x32 inputs), random weights with
  :func:`randomize_batchnorm` so activations and outputs are not degenerate.
* torchslim: :func:`torchslim_recipe` runs the steps ``torchslim.compress`` runs (``run_recipe``)
  with default technique settings, exported with ``torchslim.deploy.export_onnx``.
* peers: Torch-Pruning (:func:`torch_pruning_50`), torch.ao FX static int8 (:func:`ao_fx_int8`),
  NNCF post-training int8 on OpenVINO (:func:`openvino_model`), ``torch.nn.utils.prune``
  (:func:`nn_utils_prune`); onnxruntime ``quantize_static`` is ``quantization.ort_quantize_static``.
* transformer peers: onnxruntime's BERT route (:func:`ort_bert_fused_dynamic`: the transformer
  optimizer's fused attention, then ``quantize_dynamic``) and NNCF int8 weight compression on
  OpenVINO (:func:`nncf_weights_openvino`).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN plus the shortcut (1x1 conv + BN where the shape changes), ReLU."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu2(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """Stem conv3x3 3->widths[0], stages of BasicBlocks (first stride 1, then 2), global average
    pooling, ``fc`` Linear(widths[-1], 10)."""

    def __init__(self, widths: Sequence[int], blocks: Sequence[int], num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU())
        stages, cin = [], widths[0]
        for i, (width, n) in enumerate(zip(widths, blocks, strict=True)):
            layers = []
            for j in range(n):
                layers.append(BasicBlock(cin, width, 2 if (i > 0 and j == 0) else 1))
                cin = width
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.stages(self.stem(x))), 1))


def randomize_batchnorm(model: nn.Module, data: torch.Tensor, *, seed: int = 0) -> nn.Module:
    """Random BN affine parameters, running statistics estimated on `data` (so every layer's output
    is roughly normalised, not exploding through 27 residual blocks), then perturbed at random."""
    gen = torch.Generator().manual_seed(seed)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        for bn in bns:
            bn.weight.copy_(torch.empty(bn.num_features).uniform_(0.5, 1.5, generator=gen))
            bn.bias.copy_(torch.randn(bn.num_features, generator=gen) * 0.1)
            bn.reset_running_stats()
            bn.momentum = None  # cumulative average over the batches below
        model.train()
        for chunk in data.split(64):
            model(chunk)
        for bn in bns:
            bn.momentum = 0.1
            bn.running_var.mul_(torch.empty(bn.num_features).uniform_(0.7, 1.4, generator=gen))
            bn.running_mean.add_(torch.randn(bn.num_features, generator=gen) * 0.1 * bn.running_var.sqrt())
    return model.eval()


def resnet56(data: torch.Tensor) -> nn.Module:
    torch.manual_seed(0)
    return randomize_batchnorm(CifarResNet((16, 32, 64), (9, 9, 9)), data)


def resnet18(data: torch.Tensor) -> nn.Module:
    torch.manual_seed(0)
    return randomize_batchnorm(CifarResNet((64, 128, 256, 512), (2, 2, 2, 2)), data)


MODELS: dict[str, Callable[[torch.Tensor], nn.Module]] = {"ResNet-56": resnet56, "ResNet-18": resnet18}


def params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def conv_widths(model: nn.Module) -> list[int]:
    return [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]


def macs(model: nn.Module, x: torch.Tensor) -> int:
    """Multiply-accumulates of convolutions and linear layers for one input batch of `x`."""
    total = 0

    def hook(module: nn.Module, _inp: Any, out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            k = module.weight[0].numel()  # in/groups * kh * kw
            total += out.numel() // out.shape[0] * k
        elif isinstance(module, nn.Linear):
            total += module.in_features * module.out_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model(x[:1])
    for h in handles:
        h.remove()
    return total


# ------------------------------------------------------------------------------------------------
# torchslim


def torchslim_recipe(model: nn.Module, configs: Sequence[Any], calibration: list[tuple[torch.Tensor, Any]]) -> Any:
    """The model after the recipe of `configs` (the steps ``torchslim.compress`` runs), calibrated on
    `calibration` (the batches the peers calibrate on)."""
    from torchslim.api import run_recipe
    from torchslim.core import Context, DataSplits, Recipe, Step

    ctx = Context(
        data=DataSplits(calibration=calibration, train=calibration),
        seed=0,
        quiet=True,
        example_input=calibration[0][0][:1],
    )
    work, _ = run_recipe(copy.deepcopy(model), Recipe([Step(c) for c in configs]), context=ctx)
    return work.eval()


# ------------------------------------------------------------------------------------------------
# peers


def torch_pruning_50(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """Torch-Pruning's MagnitudePruner (L1 norms, DepGraph groups), 50% of channels per group, the
    classifier kept whole: what its README shows for a ResNet."""
    import torch_pruning as tp

    m = copy.deepcopy(model).eval()
    pruner = tp.pruner.MagnitudePruner(
        m,
        example,
        importance=tp.importance.MagnitudeImportance(p=1),
        pruning_ratio=0.5,
        ignored_layers=[m.fc],
    )
    pruner.step()
    return m.eval()


def ao_fx_int8(model: nn.Module, calibration: list[torch.Tensor]) -> nn.Module:
    """torch.ao FX graph mode static int8 with the x86 qconfig, calibrated on `calibration`."""
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = prepare_fx(copy.deepcopy(model).eval(), get_default_qconfig_mapping("x86"), (calibration[0][:1],))
        with torch.no_grad():
            for x in calibration:
                m(x)
        return convert_fx(m).eval()


def nn_utils_prune(model: nn.Module, amount: float = 0.5) -> nn.Module:
    """``torch.nn.utils.prune.global_unstructured`` (L1) over every conv and linear weight, made
    permanent with ``prune.remove``: zeros stored in dense tensors (same shapes and parameter count)."""
    from torch.nn.utils import prune

    m = copy.deepcopy(model).eval()
    targets = [(mod, "weight") for mod in m.modules() if isinstance(mod, (nn.Conv2d, nn.Linear))]
    prune.global_unstructured(targets, pruning_method=prune.L1Unstructured, amount=amount)
    for mod, name in targets:
        prune.remove(mod, name)
    return m


def openvino_model(
    model: nn.Module, calibration: list[torch.Tensor] | None, *, threads: int, xml: Path | None = None
) -> tuple[Any, Callable[[np.ndarray], Any]]:
    """OpenVINO's CPU plugin on `model` (converted with ``openvino.convert_model``, batch dynamic);
    with `calibration`, first ``nncf.quantize`` (post-training int8, default preset) on those batches.
    Returns (compiled model, a function running it on a batch)."""
    import openvino as ov

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ov_model = ov.convert_model(copy.deepcopy(model).eval(), example_input=torch.zeros(1, 3, 32, 32))
        ov_model.reshape([-1, 3, 32, 32])
        if calibration is not None:
            import nncf

            samples = [x[i : i + 1].numpy() for x in calibration for i in range(len(x))]
            ov_model = nncf.quantize(ov_model, nncf.Dataset(samples), subset_size=len(samples))
    if xml is not None:
        ov.save_model(ov_model, str(xml))
    core = ov.Core()
    compiled = core.compile_model(
        ov_model,
        "CPU",
        {"INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY"},
    )
    request = compiled.create_infer_request()
    return compiled, lambda x: request.infer({0: x})


def ort_bert_fused_dynamic(float_path: Path, out: Path) -> None:
    """onnxruntime's int8 route for BERT-like encoders on CPU: ``onnxruntime.transformers.optimizer``
    (``model_type="bert"``; heads and width read from the graph) fuses attention, skip + LayerNorm,
    bias + GELU and the embeddings, then ``quantize_dynamic`` (int8 per-channel weights) turns the
    fused ``Attention`` into ``QAttention``."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers import optimizer

    fused = out.with_name(out.stem + "_fused.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        optimizer.optimize_model(str(float_path), model_type="bert", opt_level=0).save_model_to_file(str(fused))
    quantize_dynamic(
        str(fused),
        str(out),
        weight_type=QuantType.QInt8,
        per_channel=True,
        # the fused contrib ops have no ONNX shape inference: their outputs are float
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )


def nncf_weights_openvino(
    float_path: Path, *, threads: int
) -> tuple[Callable[[dict[str, np.ndarray]], np.ndarray], str]:
    """OpenVINO's CPU plugin on the fp32 ONNX after ``nncf.compress_weights`` with its defaults (int8
    asymmetric weights; the plugin quantizes the activations of such layers at run time), compiled
    with the plugin's defaults as a user would. Returns a function of the input feeds giving the
    first output, and the precision the plugin runs float operations in (bf16 where the CPU has it)."""
    import logging

    import nncf
    import openvino as ov

    nncf.set_log_level(logging.ERROR)  # its per-layer bit-width table goes to stdout otherwise
    core = ov.Core()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        compressed = nncf.compress_weights(core.read_model(str(float_path)))
    compiled = core.compile_model(
        compressed, "CPU", {"INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY"}
    )
    return openvino_runner(compiled)


def openvino_runner(compiled: Any) -> tuple[Callable[[dict[str, np.ndarray]], np.ndarray], str]:
    """A compiled OpenVINO model as a function of named input feeds giving its first output, and the
    precision the plugin runs its float operations in (``"bf16"``, ``"f32"``)."""
    request = compiled.create_infer_request()
    names = [port.get_any_name() for port in compiled.inputs]
    output = compiled.outputs[0]
    precision = str(compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name())
    return (lambda feeds: request.infer({n: feeds[n] for n in names})[output]), precision
