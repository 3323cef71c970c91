"""Quantization-aware training with learned step sizes (LSQ, Esser et al. 2020).

:func:`prepare_qat` swaps the chosen layers for ``FakeQuant<Class>`` layers whose weights (and static
inputs) pass through LSQ fake quantizers, with step sizes initialised from the weights' range
(min-max or MSE) and from calibration observers (a data-driven start, as LSQ+ recommends; Bhalgat et
al. 2020). The model then trains in the one training loop (:func:`torchslim.train.train`) with a
:class:`QATHook` that keeps every step size positive after each optimizer step; straight-through
estimators carry the gradients through rounding (Bengio et al. 2013). :func:`convert_qat` finally
replaces each fake-quantized layer by the integer ``Quantized<Class>`` layer it simulates, so QAT and
PTQ models deploy and save the same way.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from torchslim.quantization.modules import FakeQuantMixin, convert_fake_quant, fake_quant_module
from torchslim.quantization.observers import weight_qparams
from torchslim.quantization.ptq import LayerChoice, LayerStats, set_module
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
        range_method = choice.method if choice.method in ("minmax", "percentile", "mse") else ("mse" if spec.bits < 8 else "minmax")
        scale, zp = weight_qparams(module.weight.detach().float(), bits=spec.bits, symmetric=spec.symmetric,
                                   granularity=spec.granularity, method=range_method, percentile=percentile)
        input_scale = input_zp = None
        if choice.act_spec is not None and choice.act_spec.mode == "static":
            st = stats[choice.name]
            assert st.observer is not None
            input_scale, input_zp = st.observer.qparams()
        new = fake_quant_module(module, weight_spec=spec, weight_scale=scale, weight_zero_point=zp,
                                act_spec=choice.act_spec, input_scale=input_scale, input_zero_point=input_zp,
                                learn_scales=learn_scales)
        originals[choice.name] = module
        set_module(model, choice.name, new)
    return originals


def convert_qat(model: nn.Module) -> list[str]:
    """Replace every fake-quantized layer of `model` (in place) by its integer form; return their names."""
    names = [n for n, m in model.named_modules() if isinstance(m, FakeQuantMixin)]
    for name in names:
        set_module(model, name, convert_fake_quant(model.get_submodule(name)))
    return names


def run_training(model: nn.Module, loader: Any, *, config: Any, seed: int, run_dir: Any, quiet: bool) -> Any:
    """Train `model` with the QAT hook in the one training loop (thin wrapper, for the handler)."""
    from torchslim.train import train

    return train(model, loader, config=config, hooks=[QATHook(model)], seed=seed, run_dir=run_dir, quiet=quiet)


__all__ = ["QATHook", "convert_qat", "prepare_qat", "run_training"]
