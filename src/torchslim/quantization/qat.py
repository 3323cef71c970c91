"""Quantization-aware training with learned step sizes (LSQ, Esser et al. 2020).

:func:`prepare_qat` swaps the chosen layers for ``FakeQuant<Class>`` layers whose weights (and static
inputs) pass through LSQ fake quantizers, with step sizes initialised from the weights' range
(the layer's range estimator; GPTQ starts from min-max / MSE: :class:`~torchslim.quantization.ranges.LearnedRange`)
and from calibration observers (a data-driven start, as LSQ+ recommends; Bhalgat et al. 2020).
:func:`run_qat` then trains the model through :func:`torchslim.train.train_in_context` (the one
training loop, on the context's device, seed and run directory) with a :class:`QATHook` that keeps
every step size positive after each optimizer step; straight-through estimators carry the gradients
through rounding (Bengio et al. 2013). :func:`convert_qat` finally replaces each fake-quantized layer
by the integer ``Quantized<Class>`` layer it simulates, so QAT and PTQ models deploy and save the same way.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from torchslim.core.context import Context
from torchslim.quantization.build import convert_fake_quant, fake_quant_module
from torchslim.quantization.config import Quantize
from torchslim.quantization.fake_quant import FakeQuantMixin
from torchslim.quantization.plan import LayerChoice
from torchslim.quantization.ptq import LayerStats, collect_stats, set_module
from torchslim.quantization.quantizer import WeightQuantizer
from torchslim.quantization.ranges import LearnedRange, make_range
from torchslim.train import train_in_context
from torchslim.train.hooks import TrainHook, TrainState


class QATHook(TrainHook):
    """Keeps LSQ step sizes positive after every optimizer step (``|s|``, at least 1e-8)."""

    def __init__(self, model: nn.Module | None = None) -> None:
        self.model = model

    def _layers(self, state: TrainState | None) -> list[FakeQuantMixin]:
        model = self.model if self.model is not None else (state.model if state is not None else None)
        if model is None:
            return []
        return [m for m in model.modules() if isinstance(m, FakeQuantMixin)]

    def on_train_start(self, state: TrainState) -> None:
        for layer in self._layers(state):
            layer.clamp_scales_()

    def on_step_end(self, state: TrainState) -> None:
        for layer in self._layers(state):
            layer.clamp_scales_()


def prepare_qat(
    model: nn.Module,
    choices: list[LayerChoice],
    stats: dict[str, LayerStats],
    *,
    percentile: float = 99.99,
    learn_scales: bool = True,
) -> dict[str, nn.Module]:
    """Replace the chosen layers of `model` (in place) by fake-quantized ones; return the float originals."""
    originals: dict[str, nn.Module] = {}
    for choice in choices:
        module = choice.module
        spec = choice.weight_spec
        start = (
            make_range(choice.method, percentile=percentile)
            if choice.method in ("minmax", "percentile", "mse")
            else LearnedRange()
        )
        weight = module.weight
        assert isinstance(weight, Tensor)
        scale, zp = WeightQuantizer.for_spec(spec, range=start).qparams(weight.detach().float())
        input_scale = input_zp = None
        if choice.act_spec is not None and choice.act_spec.mode == "static":
            observer = stats[choice.name].observer
            assert observer is not None  # collect_stats observes every static input
            input_scale, input_zp = observer.qparams()
        new = fake_quant_module(
            module,
            weight_spec=spec,
            weight_scale=scale,
            weight_zero_point=zp,
            act_spec=choice.act_spec,
            input_scale=input_scale,
            input_zero_point=input_zp,
            learn_scales=learn_scales,
        )
        originals[choice.name] = module
        set_module(model, choice.name, new)
    return originals


def convert_qat(model: nn.Module) -> list[str]:
    """Replace every fake-quantized layer of `model` (in place) by its integer form; return their names."""
    names = [n for n, m in model.named_modules() if isinstance(m, FakeQuantMixin)]
    for name in names:
        set_module(model, name, convert_fake_quant(model.get_submodule(name)))
    return names


def run_qat(
    work: nn.Module, choices: list[LayerChoice], batches: Any, train_loader: Any, config: Quantize, context: Context
) -> tuple[nn.Module, dict[str, nn.Module], Any, dict[str, Any]]:
    """Prepare, train (in the context, on its device) and convert; returns the model, the float
    originals, the float model's calibration outputs and the training facts."""
    observer = config.activations.observer if config.activations is not None else "minmax"
    percentile = config.activations.percentile if config.activations is not None else config.weights.percentile
    stats, float_outputs = collect_stats(work, choices, batches, observer=observer, percentile=percentile)
    originals = prepare_qat(
        work, choices, stats, percentile=config.weights.percentile, learn_scales=config.learn_scales
    )
    home = next((p.device for p in work.parameters()), None)
    result = train_in_context(
        work, config=config.train, context=context, technique="quantize", hooks=[QATHook(work)], loader=train_loader
    )
    convert_qat(work)
    if home is not None:
        work.to(home)  # trained on context.device; calibration and the report run where the model came from
    work.eval()
    qat_info: dict[str, Any] = {"epochs": config.train.epochs, "lr": config.train.lr}
    for key in ("steps", "final_loss", "seconds"):
        value = getattr(result, key, None)
        if isinstance(value, (int, float)):
            qat_info[key] = value
    return work, originals, float_outputs, qat_info


__all__ = ["QATHook", "convert_qat", "prepare_qat", "run_qat"]
