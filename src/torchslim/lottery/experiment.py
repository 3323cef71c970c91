"""The lottery experiment loop: train dense, then per level prune, rewind, train again, with the controls.

Level 0 trains the dense model from ``θ_0`` (copying ``θ_k`` on the way when rewinding late). Level
``L >= 1`` ranks the trained weights of level ``L - 1`` under its masks, removes ``p`` of what is
left (:func:`~torchslim.lottery.masking.level_masks`), rewinds the survivors to ``θ_k`` and trains
``T - k`` steps; the controls train the same steps on the same data order: ``reinit`` (the
ticket's mask on fresh random weights) and ``random`` (a random mask of the ticket's per-layer
sparsity on ``θ_k``). All training goes through :func:`torchslim.train.train_in_context`.

Every level is written by :class:`~torchslim.lottery.store.LevelStore` before the next starts; a
rerun loads the completed levels and continues at the first missing one, so with the same seed
(on the CPU, same threads) it ends with the same masks as an uninterrupted run: the masks of a
level depend only on the saved weights and masks of the level before it, and every random draw
(training order, re-initialisation, random masks) is seeded from the run's seed and the level.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from torchslim.core.context import Context
from torchslim.core.errors import ConfigError, DataError
from torchslim.core.targets import Targets
from torchslim.io.artifact import baked_state_dict
from torchslim.lottery.config import NAME, LotteryConfig
from torchslim.lottery.masking import (
    build_branch,
    level_masks,
    output_layer_of,
    prunable_layers,
    random_masks,
    reinitialize,
    unmasked_copy,
)
from torchslim.lottery.rewind import RewindCapture, plain_state
from torchslim.lottery.store import LevelStore, level_dir_name
from torchslim.measure.accuracy import evaluate
from torchslim.train.checkpoint import model_fingerprint
from torchslim.train.config import TrainConfig
from torchslim.train.hooks import TrainHook
from torchslim.train.optim import planned_steps, steps_per_epoch
from torchslim.train.step import train_in_context

LevelCallback = Callable[[dict[str, Any]], None]


@dataclasses.dataclass
class LotteryOutcome:
    """What :func:`run_lottery` returns: one record per level (level 0 is dense), the final ticket
    (trained, masks applied), its masks, and which levels were read back from disk or computed now."""

    records: list[dict[str, Any]]
    ticket: nn.Module
    masks: dict[str, torch.Tensor]
    loaded_levels: list[int]
    computed_levels: list[int]
    layers: list[str]
    output_layer: str


def branch_seed(seed: int, level: int, branch: int) -> int:
    """A seed for one random draw of one level (re-initialisation, random mask), from the run's seed."""
    return (int(seed) * 1_000_003 + level * 97 + branch) % (2**63 - 1)


def weight_count(model: nn.Module, layer: str) -> int:
    weight = getattr(model.get_submodule(layer), "weight", None)
    return weight.numel() if isinstance(weight, torch.Tensor) else 0


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").clone() for k, v in baked_state_dict(model).items()}


@dataclasses.dataclass
class _Experiment:
    template: nn.Module
    layers: list[str]
    output_layer: str
    config: LotteryConfig
    context: Context
    store: LevelStore
    hooks: tuple[TrainHook, ...]
    rewind_steps: int
    planned: int
    eval_splits: dict[str, Iterable[Any]]
    rewind_state: dict[str, torch.Tensor] | None = None
    init_state: dict[str, torch.Tensor] = dataclasses.field(default_factory=dict)

    @property
    def level_train(self) -> TrainConfig:
        """The budget of every pruned level and control: ``T - k`` steps (``T`` when k = 0)."""
        if self.rewind_steps == 0:
            return self.config.train
        return self.config.train.replace(max_steps=self.planned - self.rewind_steps)

    def train(
        self, level: int, branch: str, state: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor]
    ) -> tuple[nn.Module, dict[str, Any]]:
        """Build, train and evaluate one branch; the model and its metrics."""
        model = build_branch(self.template, state, masks)
        extra: list[TrainHook] = []
        capture = RewindCapture(self.rewind_steps) if level == 0 and self.rewind_steps > 0 else None
        if capture is not None:
            extra.append(capture)
        config = self.config.train if level == 0 else self.level_train
        context = self.context.replace(run_dir=self.store.checkpoints)
        started = time.perf_counter()
        result = train_in_context(
            model,
            config=config,
            context=context,
            technique=f"{level_dir_name(level)}/{branch}",
            hooks=[*extra, *self.hooks],
        )
        metrics: dict[str, Any] = {"steps": result.steps, "final_loss": result.final_loss}
        for split, loader in self.eval_splits.items():
            stats = evaluate(model, loader)
            metrics[f"{split}_accuracy"] = stats.accuracy
            metrics[f"{split}_loss"] = stats.loss
        first = next(iter(self.eval_splits))
        metrics["accuracy"] = metrics[f"{first}_accuracy"]
        metrics["seconds"] = round(time.perf_counter() - started, 3)
        if capture is not None:
            if capture.captured is None:
                raise ConfigError(
                    f"LotteryConfig.rewind={self.config.rewind!r} ({self.rewind_steps} steps) was never reached: "
                    f"the dense run took {result.steps} steps."
                )
            self.store.save_tensors("rewind.safetensors", capture.captured)
            self.rewind_state = capture.captured
        return model, metrics

    def sparsity_record(self, level: int, masks: Mapping[str, torch.Tensor]) -> dict[str, Any]:
        sizes = {name: weight_count(self.template, name) for name in self.layers}
        kept = {name: int(masks[name].sum()) if name in masks else size for name, size in sizes.items()}
        total = sum(sizes.values())
        return {
            "level": level,
            "weights_remaining": sum(kept.values()) / total,
            "weights_kept": sum(kept.values()),
            "weights_prunable": total,
            "layers": {name: {"kept": kept[name], "weights": sizes[name]} for name in self.layers},
        }

    def dense_level(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        model, metrics = self.train(0, "ticket", self.init_state, {})
        if self.rewind_steps == 0:
            self.rewind_state = self.init_state
        state = _cpu_state(model)
        record = {**self.sparsity_record(0, {}), "rewind": self.config.rewind, "ticket": metrics}
        self.store.write_level(0, {"ticket": state}, record)
        return record, state

    def pruned_level(
        self, level: int, previous: Mapping[str, torch.Tensor], previous_masks: Mapping[str, torch.Tensor]
    ) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        assert self.rewind_state is not None
        config = self.config
        ranked = build_branch(self.template, previous, previous_masks)
        masks = level_masks(
            ranked,
            self.layers,
            level=level,
            rate=config.rate,
            output_rate=config.effective_output_rate,
            output_layer=self.output_layer,
            scope=config.scope,
        )
        record = {**self.sparsity_record(level, masks), "rewind": config.rewind}
        model, record["ticket"] = self.train(level, "ticket", self.rewind_state, masks)
        state = _cpu_state(model)
        tensors = {"masks": masks, "ticket": state}
        if "reinit" in config.controls:
            fresh_model = reinitialize(unmasked_copy(self.template), seed=branch_seed(self.context.seed, level, 1))
            fresh = plain_state(fresh_model)
            record["reinit"] = self.train(level, "reinit", fresh, masks)[1]
        if "random" in config.controls:
            chance = random_masks(masks, seed=branch_seed(self.context.seed, level, 2))
            record["random"] = self.train(level, "random", self.rewind_state, chance)[1]
            tensors["random_masks"] = chance
        self.store.write_level(level, tensors, record)
        return record, state, masks


def _eval_splits(context: Context) -> dict[str, Iterable[Any]]:
    data = context.data
    splits = {
        name: loader
        for name in ("test", "validation")
        if data is not None and (loader := getattr(data, name, None)) is not None
    }
    if not splits:
        raise DataError(
            f"Technique {NAME!r} measures every level: it needs test or validation data, but none was given."
        )
    return splits


def _identity(exp: _Experiment, per_epoch: int | None) -> dict[str, Any]:
    config = {k: v for k, v in exp.config.to_dict().items() if k not in ("levels", "train")}
    return {
        "format": "torchslim.lottery",
        "version": 1,
        "config": {**config, "train": exp.config.train.identity()},
        "seed": exp.context.seed,
        "init": model_fingerprint(exp.template),
        "layers": exp.layers,
        "output_layer": exp.output_layer,
        "steps_per_epoch": per_epoch,
    }


def _prepare(
    model: nn.Module,
    config: LotteryConfig,
    context: Context,
    targets: Targets | None,
    store: LevelStore,
    hooks: Sequence[TrainHook],
) -> tuple[_Experiment, int | None]:
    """Check every input before any work; the experiment and the batches per epoch."""
    template = unmasked_copy(model).to("cpu")
    if config.init == "random":
        reinitialize(template, seed=branch_seed(context.seed, 0, 0))
    layers = prunable_layers(template, targets)
    output = output_layer_of(layers, config.output_layer)
    per_epoch = steps_per_epoch(context.require_data("train", technique=NAME))
    planned = planned_steps(config.train, per_epoch)
    rewind = config.rewind_point.steps(per_epoch)
    if rewind > 0 and (planned is None or rewind >= planned):
        raise ConfigError(
            f"LotteryConfig.rewind={config.rewind!r} ({rewind} steps) must come before the end of the dense run "
            f"({planned if planned is not None else 'an unknown number of'} steps); "
            "set train.max_steps or rewind earlier."
        )
    exp = _Experiment(
        template=template,
        layers=layers,
        output_layer=output,
        config=config,
        context=context,
        store=store,
        hooks=tuple(hooks),
        rewind_steps=rewind,
        planned=planned or 0,
        eval_splits=_eval_splits(context),
    )
    exp.init_state = plain_state(template)
    return exp, per_epoch


def run_lottery(
    model: nn.Module,
    config: LotteryConfig,
    *,
    context: Context,
    targets: Targets | None = None,
    directory: str | Path | None = None,
    hooks: Sequence[TrainHook] = (),
    on_level: LevelCallback | None = None,
) -> LotteryOutcome:
    """Run (or resume, from `directory`) the lottery experiment on a copy of `model`.

    `hooks` are added to every training run (after the lottery's own); `on_level` is called with
    each level's record as it completes or is read back. `model` is never modified.
    """
    store = LevelStore(Path(directory) if directory is not None else None)
    exp, per_epoch = _prepare(model, config, context, targets, store, hooks)
    store.open(_identity(exp, per_epoch))
    records: list[dict[str, Any]] = []
    loaded: list[int] = []
    computed: list[int] = []
    state: dict[str, torch.Tensor] = {}
    masks: dict[str, torch.Tensor] = {}
    for level in range(config.levels + 1):
        record = store.completed(level)
        if record is not None:
            state = store.read_level(level, "ticket")
            masks = store.read_level(level, "masks") if level > 0 else {}
            loaded.append(level)
        elif level == 0:
            record, state = exp.dense_level()
            computed.append(level)
        else:
            if exp.rewind_state is None:
                exp.rewind_state = exp.init_state if exp.rewind_steps == 0 else store.load_tensors("rewind.safetensors")
            if exp.rewind_state is None:
                raise DataError(
                    f"Lottery run {str(directory)!r}: level 0 is complete but rewind.safetensors is missing."
                )
            record, state, masks = exp.pruned_level(level, state, masks)
            computed.append(level)
        records.append(record)
        if on_level is not None:
            on_level(record)
    if store.checkpoints is not None:
        shutil.rmtree(store.checkpoints, ignore_errors=True)
    ticket = build_branch(exp.template, state, masks)
    return LotteryOutcome(records, ticket, masks, loaded, computed, exp.layers, exp.output_layer)
