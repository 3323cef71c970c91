"""The ``lottery`` technique (a recipe step) and the Python API :func:`lottery` with its result.

As a recipe step, ``lottery`` runs the whole experiment on the step's model and hands the winning
ticket (the last level: trained, masks applied) to the next step, e.g. ``lottery`` then
``quantize``; its run directory is ``context.run_dir / "lottery"`` when the run has one (a killed
``compress`` resumes there). :func:`lottery` runs the same experiment directly and returns a
:class:`LotteryResult` whose :meth:`~LotteryResult.save` writes the curve data (``lottery.json``),
the plot (``lottery.png``), ``report.html`` and the ticket as a sparse torchslim artifact
(``ticket/``, :func:`torchslim.io.save`: zeros stored by the sparse codecs), which ``torchslim
compress`` or ``torchslim.load`` take as input.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from torchslim.core.context import Context, DataSplits
from torchslim.core.errors import ConfigError
from torchslim.core.targets import Targets
from torchslim.core.technique import TECHNIQUES, StepOutcome
from torchslim.data.registry import load_splits
from torchslim.io.artifact import save
from torchslim.io.atomic import write_bytes, write_json, write_text
from torchslim.lottery.config import NAME, LotteryConfig
from torchslim.lottery.curves import curve_data, curve_html, curve_png, render_table
from torchslim.lottery.experiment import LevelCallback, LotteryOutcome, run_lottery
from torchslim.measure.run_energy import RunEnergyMeter
from torchslim.train.config import TrainConfig
from torchslim.train.hooks import TrainHook


@dataclasses.dataclass
class LotteryResult:
    """A finished lottery run: `records` (one per level, level 0 dense), the `ticket` model (trained,
    masks applied), the `config`, where it ran (`directory`) and which levels were resumed from disk."""

    records: list[dict[str, Any]]
    ticket: nn.Module
    config: LotteryConfig
    directory: Path | None
    loaded_levels: list[int]
    computed_levels: list[int]
    energy: dict[str, Any] | None = None
    """What this run (the levels it computed) used: ``RunEnergy.to_dict()``, measured or estimated, labelled."""

    @property
    def dense_accuracy(self) -> float:
        return float(self.records[0]["ticket"]["accuracy"])

    @property
    def ticket_accuracy(self) -> float:
        return float(self.records[-1]["ticket"]["accuracy"])

    @property
    def weights_remaining(self) -> float:
        return float(self.records[-1]["weights_remaining"])

    def curves(self) -> dict[str, Any]:
        """Accuracy against weights remaining for the ticket and the controls (see :func:`curve_data`)."""
        return curve_data(self.records)

    def render(self) -> str:
        """The terminal table (rich), as text, and the energy this run used."""
        text = render_table(self.records, title=self.title)
        if self.energy is not None:
            e = self.energy
            text += f"\nenergy of this run: {e['joules']:,.1f} J ({e['grams_co2e']:.3g} gCO2e), {e['label']}\n"
        return text

    @property
    def title(self) -> str:
        config = self.config
        model = type(self.ticket).__name__
        return f"lottery ticket: {model}, rate {config.rate:g}/level ({config.scope}), rewind {config.rewind}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "curves": self.curves(),
            "dense_accuracy": self.dense_accuracy,
            "ticket_accuracy": self.ticket_accuracy,
            "ticket_weights_remaining": self.weights_remaining,
            "levels": self.records,
            "loaded_levels": self.loaded_levels,
            "computed_levels": self.computed_levels,
            "energy": self.energy,
        }

    def save(self, directory: str | Path) -> dict[str, Path]:
        """Write ``lottery.json``, ``lottery.png``, ``report.html`` and the ticket artifact ``ticket/``."""
        directory = Path(directory)
        paths = {"json": directory / "lottery.json", "html": directory / "report.html", "ticket": directory / "ticket"}
        write_json(paths["json"], self.to_dict())
        png = curve_png(self.records, title=self.title)
        if png is not None:
            paths["png"] = directory / "lottery.png"
            write_bytes(paths["png"], png)
        write_text(paths["html"], curve_html(self.records, title=self.title, png=png))
        save(self.ticket, paths["ticket"], config={"technique": NAME, "lottery": self.config.to_dict()})
        return paths


def _outcome_result(outcome: LotteryOutcome, config: LotteryConfig, directory: Path | None) -> LotteryResult:
    return LotteryResult(
        records=outcome.records,
        ticket=outcome.ticket,
        config=config,
        directory=directory,
        loaded_levels=outcome.loaded_levels,
        computed_levels=outcome.computed_levels,
    )


def _splits(data: DataSplits | str, *, seed: int, batch_size: int) -> DataSplits:
    if isinstance(data, DataSplits):
        return data
    if isinstance(data, str):
        return load_splits(data, seed=seed, batch_size=batch_size)
    raise ConfigError(f"lottery(data=...) must be DataSplits or a dataset name, got {type(data).__name__}.")


def lottery(
    model: nn.Module,
    data: DataSplits | str,
    *,
    levels: int = 5,
    rate: float = 0.2,
    rewind: str = "0",
    scope: str = "layer",
    output_rate: float | None = None,
    output_layer: str | None = None,
    controls: Sequence[str] = ("reinit", "random"),
    init: str = "model",
    train: TrainConfig | dict[str, Any] | None = None,
    targets: Targets | None = None,
    seed: int = 0,
    out: str | Path | None = None,
    device: str = "cpu",
    threads: int | None = None,
    batch_size: int = 128,
    hooks: Sequence[TrainHook] = (),
    on_level: LevelCallback | None = None,
    grid_intensity: float | None = None,
) -> LotteryResult:
    # long: the keyword-only options of LotteryConfig, one a line, and where the run goes
    """Find a lottery ticket in `model` by iterative magnitude pruning with rewinding (see :class:`LotteryConfig`).

    `data`: DataSplits (train for training, test / validation for the curves) or a built-in dataset
    name. With `out`, every level is written there as it completes, a rerun with the same
    arguments resumes at the first unfinished level, and the curves, plot, ``report.html`` and the
    ticket artifact (``out/ticket``) are written at the end. `hooks` join every training run. The
    run's energy (measured where a counter exists, else estimated; at `grid_intensity` gCO2e/kWh) is
    in ``result.energy`` (:class:`torchslim.measure.run_energy.RunEnergyMeter`).
    `model` is not modified; its weights are ``θ_0`` (``init="random"`` draws fresh ones from `seed`).
    """
    options: dict[str, Any] = {
        "levels": levels,
        "rate": rate,
        "rewind": rewind,
        "scope": scope,
        "output_rate": output_rate,
        "output_layer": output_layer,
        "controls": list(controls),
        "init": init,
    }
    if train is not None:
        options["train"] = train.to_dict() if isinstance(train, TrainConfig) else dict(train)
    config = LotteryConfig.from_dict(options)
    assert isinstance(config, LotteryConfig)
    splits = _splits(data, seed=seed, batch_size=batch_size)
    context = Context(data=splits, device=device, seed=seed, threads=threads, quiet=True)
    directory = Path(out) if out is not None else None
    with RunEnergyMeter(grid_intensity=grid_intensity) as meter:
        outcome = run_lottery(
            model, config, context=context, targets=targets, directory=directory, hooks=hooks, on_level=on_level
        )
    result = _outcome_result(outcome, config, directory)
    result.energy = meter.result.to_dict()
    if directory is not None:
        result.save(directory)
    return result


@TECHNIQUES.handles(LotteryConfig)
def lottery_step(model: nn.Module, config: LotteryConfig, *, targets: Targets | None, context: Context) -> StepOutcome:
    """Handler of :class:`LotteryConfig`: the experiment on a copy; the winning ticket goes to the next step."""
    directory = context.run_dir / NAME if context.run_dir is not None else None
    outcome = run_lottery(copy.deepcopy(model), config, context=context, targets=targets, directory=directory)
    result = _outcome_result(outcome, config, directory)
    last = outcome.records[-1]
    layers = [
        {
            "layer": name,
            "type": type(outcome.ticket.get_submodule(name)).__name__,
            "params": entry["weights"],
            "pruned": entry["weights"] - entry["kept"],
            "sparsity": 1.0 - entry["kept"] / entry["weights"],
        }
        for name, entry in last["layers"].items()
    ]
    info = {
        "levels": config.levels,
        "dense_accuracy": result.dense_accuracy,
        "ticket_accuracy": result.ticket_accuracy,
        "weights_remaining": result.weights_remaining,
        "curves": result.curves(),
        "resumed_levels": outcome.loaded_levels,
        "note": "unstructured masks: dense kernels still compute every MAC; the gain is in bytes on disk",
    }
    return StepOutcome(model=outcome.ticket, layers=layers, info=info)
