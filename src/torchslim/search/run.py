"""`search`: a target in; sensitivity, the study, the best model after every trial, the chosen recipe out.

Phases, all resumable from `out_dir` (a rerun with the same `out_dir` continues):

1. the original's quality and costs (``baseline.json``);
2. sensitivity (``sensitivity.json``): channel groups and layers to pruning
   (:func:`torchslim.pruning.sensitivity`), layers to weight bit-width (:func:`~.bits.bit_sensitivity`);
   the search space's per-layer ranges come from them (``space.json``);
3. the optuna study (``study.db`` unless `storage` names a database), trials until a budget ends;
   after every trial the best model so far is saved atomically to ``best/`` (feasible first);
4. the chosen point: its recipe with the full fine-tuning budget (``recipe.yaml``, what
   ``torchslim compress --recipe`` reruns), the Pareto fronts and why it was chosen (:mod:`.report`).

The time budget covers all of it: trials stop when the time left would not fit the longest trial,
and a share (`final_share`) is kept for the chosen point's full fine-tune, sized from the measured
seconds per training step.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import tempfile
import time
from collections.abc import Sequence, Sized
from pathlib import Path
from typing import Any

import torch
from torch import nn

from torchslim.core.context import Context, DataSplits
from torchslim.core.errors import ConfigError, DataError
from torchslim.io import save
from torchslim.io.atomic import write_json, write_text
from torchslim.measure.run_energy import RunEnergyMeter
from torchslim.pruning import SensitivityResult, sensitivity
from torchslim.quantization import Quantize
from torchslim.search.bits import bit_sensitivity, weight_counts
from torchslim.search.evaluate import CostMeter, quality_fn
from torchslim.search.progress import SearchProgress
from torchslim.search.promote import promote
from torchslim.search.report import SearchResult, write_report
from torchslim.search.space import SearchSpace, build_space, layers_with_choices
from torchslim.search.study import Budget, make_sampler, open_study, run_worker, storage_url
from torchslim.search.target import Target, parse_target
from torchslim.search.trial import TrialRunner, row_key


@dataclasses.dataclass(frozen=True, kw_only=True)
class SearchOptions:
    """How the search runs (the target says what it looks for).

    Attributes:
        trials: total trials of the study (over resumes and workers); None: until `minutes` end.
        minutes: this run's time budget, sensitivity and the final fine-tune's share included.
        storage: a database URL shared by workers (``postgresql://...``); None: SQLite in `out_dir`.
        study_name: None: derived from the target and the model.
        sampler: ``tpe`` (default), ``nsga2`` or ``random``.
        runtime: the deployment runtime latency is measured on.
        latency_batch: the batch size latency is measured at.
        latency_threads: the threads the runtime uses while latency is measured (1: one core, the
            steadiest measurement on a shared machine and a phone-like deployment).
        latency_baseline: what a latency target is a fraction of: ``runtime`` (the fp32 model on the
            same runtime, the default) or ``pytorch-eager`` (the fp32 model as the user runs it today).
        finetune_steps: the short recovery budgets a trial chooses from (optimizer steps).
        final_epochs: the chosen point's full fine-tune (capped by the time left).
        final_share: share of `minutes` kept for promoting candidates to that fine-tune and for
            compress's rerun of the chosen recipe (:mod:`.promote`).
        promote_slack: points past the drop budget (after a trial's short fine-tune) a candidate
            may be for promotion; None: max_drop.
        eval_batches: validation batches per quality measurement (None: the whole split).
        sensitivity_batches: validation batches per point of the sensitivity curves.
        sensitivity_share: share of `minutes` the sensitivity analysis may take; the layers its
            bit-width curves did not reach keep every bit-width choice.
        sensitivity_drop: quality drop (points, without fine-tuning) that bounds the per-layer ranges;
            None: max(5, 3 x max_drop).
        drop_margin: points kept below `max_drop` when a trial is judged on the validation split
            (a guard against selecting on a finite sample); None: 0.3 x max_drop.
        seed: sampler and training seed.
        quiet: no progress bar.
    """

    trials: int | None = None
    minutes: float | None = None
    storage: str | None = None
    study_name: str | None = None
    sampler: str = "tpe"
    runtime: str = "onnxruntime"
    latency_batch: int = 1
    latency_threads: int = 1
    latency_baseline: str = "runtime"
    finetune_steps: tuple[int, ...] = (0, 100, 200)
    final_epochs: int = 2
    final_share: float = 0.35
    promote_slack: float | None = None
    eval_batches: int | None = None
    sensitivity_batches: int | None = 4
    sensitivity_share: float = 0.15
    sensitivity_drop: float | None = None
    drop_margin: float | None = None
    seed: int = 0
    quiet: bool = False

    def __post_init__(self) -> None:
        if self.trials is None and self.minutes is None:
            raise ConfigError("search needs a budget: trials=N and/or minutes=M.")
        if self.latency_baseline not in ("runtime", "pytorch-eager"):
            raise ConfigError(f"latency_baseline={self.latency_baseline!r} must be 'runtime' or 'pytorch-eager'.")
        if not 0.0 < self.sensitivity_share < 1.0:
            raise ConfigError(f"sensitivity_share={self.sensitivity_share!r} must be in (0, 1).")
        if not 0.0 <= self.final_share < 1.0:
            raise ConfigError(f"final_share={self.final_share!r} must be in [0, 1).")


def search(
    model: nn.Module,
    data: DataSplits,
    *,
    target: Target,
    out_dir: str | Path | None = None,
    options: SearchOptions | None = None,
    example_input: Any = None,
) -> SearchResult:
    """Search recipes for `model` that meet `target` (see the module docstring); `model` is not changed.

    ``result.energy`` is what the search itself used (:class:`~torchslim.measure.run_energy.RunEnergyMeter`:
    measured where a counter exists, else estimated from CPU time, labelled either way)."""
    with RunEnergyMeter() as energy:
        result = _search(model, data, target=target, out_dir=out_dir, options=options, example_input=example_input)
    result.energy = energy.result.to_dict()
    write_report(result)
    return result


def _search(
    model: nn.Module,
    data: DataSplits,
    *,
    target: Target,
    out_dir: str | Path | None,
    options: SearchOptions | None,
    example_input: Any,
) -> SearchResult:
    # long: the four phases in order, each a call; resuming reads each phase's file back
    options = options or SearchOptions(trials=20)
    started = time.monotonic()
    out = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix="torchslim-search-"))
    out.mkdir(parents=True, exist_ok=True)
    held_out, metric = _held_out(data, target)
    if example_input is None:
        example_input = _example(data, model)
    model = model.eval()
    quality = quality_fn(held_out, metric=metric, reference=model, max_batches=options.eval_batches)
    context = Context(data=data, seed=options.seed, quiet=True, example_input=example_input, teacher=model)
    meter = CostMeter(
        model,
        example_input,
        workdir=out / "deploy",
        runtime=options.runtime,
        latency_batch=options.latency_batch,
        threads=options.latency_threads,
        baseline_runtime=None if options.latency_baseline == "runtime" else options.latency_baseline,
    )
    baseline = meter.baseline(float(quality(model)), metric)
    write_json(out / "baseline.json", baseline.to_dict())
    deadline = None if options.minutes is None else started + 60 * options.minutes * options.sensitivity_share
    space = _space(model, out, held_out, target, options, metric, example_input, deadline=deadline)
    url = storage_url(options.storage, out)
    name = options.study_name or _study_name(model, target)
    directions = ["maximize", "minimize"]
    sampler = make_sampler(options.sampler, seed=options.seed)
    study = open_study(url, name, directions=directions, sampler=sampler)
    if not study.trials:
        for point in space.seeds():
            study.enqueue_trial(point, skip_if_exists=True)
    margin = options.drop_margin if options.drop_margin is not None else 0.3 * target.max_drop
    runner = TrialRunner(
        original=model,
        space=space,
        target=dataclasses.replace(target, max_drop=max(0.0, target.max_drop - margin)),
        meter=meter,
        context=context,
        quality=quality,
        baseline_quality=baseline.quality,
        metric=metric,
    )
    seconds = None if options.minutes is None else options.minutes * 60 * (1 - options.final_share)
    budget = Budget(trials=options.trials, seconds=seconds, started=started)
    with SearchProgress(options.trials, budget, target, quiet=options.quiet) as progress:
        saver = BestSaver(out, runner, target.primary_metric, progress)
        interrupted = False
        try:
            run_worker(study, runner, budget=budget, on_trial_done=saver, url=url)
        except KeyboardInterrupt:
            interrupted = True
    records = [t.user_attrs["record"] | {"number": t.number} for t in study.trials if "record" in t.user_attrs]
    final_train, final_steps = _final_train(records, data, options, started)
    chosen, promotions = promote(
        runner,
        space,
        records,
        target=target,
        train=final_train,
        final_steps=final_steps,
        deadline=float("inf") if options.minutes is None else started + 60 * options.minutes,
        margin=margin,
        slack=options.promote_slack if options.promote_slack is not None else target.max_drop,
        out=out,
    )
    result = SearchResult(
        target=target,
        baseline=baseline.to_dict(),
        records=records,
        chosen=chosen,
        recipe=space.recipe(chosen["params"], train=final_train) if chosen else None,
        space=space.to_dict(),
        out_dir=out,
        storage=url,
        study_name=name,
        seconds=time.monotonic() - started,
        interrupted=interrupted,
        failed=sum(1 for t in study.trials if t.state.name == "FAIL"),
        promotions=promotions,
        drop_margin=margin,
    )
    return result


def _held_out(data: DataSplits, target: Target) -> tuple[Any, str]:
    loader = data.validation if data.validation is not None else data.test
    if loader is None:
        raise DataError("search needs held-out data: a validation (or test) split.")
    return loader, "cosine" if target.min_cosine is not None else "accuracy"


def _example(data: DataSplits, model: nn.Module) -> Any:
    """One sample of the data as the model takes it (text models tokenize their raw strings)."""
    for loader in (data.calibration, data.train, data.validation, data.test):
        if loader is not None:
            for batch in loader:
                inputs = batch[0] if isinstance(batch, (list, tuple)) else batch
                if isinstance(inputs, torch.Tensor):
                    return inputs[:1]
                tokenize = getattr(model, "tokenize", None)
                if isinstance(inputs, (list, tuple)) and inputs and isinstance(inputs[0], str) and callable(tokenize):
                    return dict(tokenize(list(inputs[:1])))
                return inputs
    raise DataError("search: the data has no batches.")


def _study_name(model: nn.Module, target: Target) -> str:
    from torchslim.models import get_model_spec

    spec = get_model_spec(model) or {"class": type(model).__name__}
    digest = hashlib.sha1(json.dumps([spec, target.to_dict()], sort_keys=True, default=str).encode()).hexdigest()
    return f"torchslim-{spec.get('name', spec.get('class', 'model'))}-{digest[:10]}"


def _space(
    model: nn.Module,
    out: Path,
    held_out: Any,
    target: Target,
    options: SearchOptions,
    metric: str,
    example_input: Any,
    *,
    deadline: float | None,
) -> SearchSpace:
    """The space of this study: read back when resuming, else built from fresh sensitivity curves
    (the bit-width curves of the layers that get choices, largest first, until `deadline`)."""
    space_file = out / "space.json"
    if space_file.is_file():
        return SearchSpace.from_dict(json.loads(space_file.read_text()))
    drop = options.sensitivity_drop if options.sensitivity_drop is not None else max(5.0, 3 * target.max_drop)
    channels = sparsity = None
    if metric == "accuracy":
        common = {"max_batches": options.sensitivity_batches, "sparsities": (0.25, 0.5, 0.7, 0.9)}
        channels = _try_sensitivity(model, held_out, kind="channels", example_input=example_input, **common)
        sparsity = _try_sensitivity(model, held_out, kind="unstructured", **common)
    quick = quality_fn(held_out, metric=metric, reference=model, max_batches=options.sensitivity_batches)
    bits = bit_sensitivity(model, quick, layers=layers_with_choices(weight_counts(model)), deadline=deadline)
    write_json(
        out / "sensitivity.json",
        {
            "channels": channels.to_dict() if channels else None,
            "unstructured": sparsity.to_dict() if sparsity else None,
            "bits": bits.to_dict(),
        },
    )
    space = build_space(
        channels=channels,
        sparsity=sparsity,
        bits=bits,
        range_drop=drop / 100.0,
        finetune_steps=options.finetune_steps,
    )
    bounded = {*target.bounds(), target.primary_metric}
    space.fit_to(bounded=bounded, metric=metric)
    if _dynamic_activations(model):  # splitting outlier channels costs latency for accuracy: a choice
        space.outlier_channels = [Quantize().outlier_channels, 0]
    # entropy coding is lossless: when size is bounded or minimised, every quantized point gets it
    space.entropy_code_always = space.entropy_code and "size" in bounded
    write_json(space_file, space.to_dict())
    return space


def _dynamic_activations(model: nn.Module) -> bool:
    """Whether ``quantize``'s defaults give `model` dynamic int8 activations (a transformer's Linears),
    where outlier channel splitting applies."""
    spec = Quantize().activation_spec(model)
    return spec is not None and spec.mode == "dynamic"


def _try_sensitivity(model: nn.Module, loader: Any, **kwargs: Any) -> SensitivityResult | None:
    try:
        return sensitivity(model, loader, **kwargs)
    except Exception:  # noqa: BLE001 - a model nothing can prune is searched over quantization only
        return None


def _final_train(
    records: Sequence[dict[str, Any]], data: DataSplits, options: SearchOptions, started: float
) -> tuple[dict[str, Any], int | None]:
    """The chosen point's full fine-tune (`final_epochs`, capped by what 40% of the time left allows at
    the seconds per step the trials measured) and its optimizer steps (None: unknown)."""
    train: dict[str, Any] = {"epochs": options.final_epochs}
    steps_per_epoch = len(data.train) if isinstance(data.train, Sized) else None
    timed = [r for r in records if r.get("steps") and r.get("recovery_seconds")]
    if steps_per_epoch is None or not timed:
        return train, None
    per_step = sum(r["recovery_seconds"] for r in timed) / sum(r["steps"] for r in timed)
    steps = options.final_epochs * steps_per_epoch
    if options.minutes is not None:
        left = options.minutes * 60 - (time.monotonic() - started)
        fit = int(0.4 * max(left, 0.0) / max(per_step, 1e-6))
        if fit < steps:
            steps = max(max(r["steps"] for r in timed), fit, 1)
            train["max_steps"] = steps
    return train, steps


class BestSaver:
    """After every trial: the best model so far, saved atomically to ``best/`` (with its record in
    ``best.json``) when this trial beats the one saved; a file lock orders workers sharing `out`."""

    def __init__(self, out: Path, runner: TrialRunner, primary: str, progress: SearchProgress) -> None:
        self.out = out
        self.runner = runner
        self.primary = primary
        self.progress = progress

    def __call__(self, study: Any, trial: Any) -> None:
        record = trial.user_attrs.get("record")
        model = self.runner.last_model
        if record is not None and model is not None:
            with open(self.out / ".best.lock", "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                saved = _read_json(self.out / "best.json")
                if saved is None or row_key(record, self.primary) < row_key(saved, self.primary):
                    record = record | {"number": trial.number}
                    save(model, self.out / "best", config={"recipe": record["recipe"], "search": record})
                    write_json(self.out / "best.json", record)
                    write_text(self.out / "best-recipe.yaml", _recipe_yaml(record["recipe"]))
        self.runner.last_model = None
        self.progress.update(study, _read_json(self.out / "best.json"))


def _recipe_yaml(recipe: dict[str, Any]) -> str:
    from torchslim.core.recipe import Recipe

    return Recipe.from_dict(recipe).to_yaml()


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def recipe_for_target(
    model: nn.Module,
    data: DataSplits | None,
    target: Target | str,
    *,
    recipe: Any = None,
    options: SearchOptions | None = None,
    run_dir: str | Path | None = None,
    quiet: bool = False,
) -> Any:
    """What ``compress(..., target=...)`` runs: the search (in ``run_dir/search`` when given), then
    the chosen recipe with its full fine-tune, which compress applies and measures like any recipe."""
    if recipe is not None:
        raise ConfigError("compress takes recipe=... or target=..., not both.")
    if data is None:
        raise DataError("compress(target=...) needs data: the search measures accuracy and fine-tunes.")
    if isinstance(target, str):
        target = parse_target(target)
    options = options or SearchOptions(trials=20, quiet=quiet)
    out = Path(run_dir) / "search" if run_dir is not None else None
    result = search(model, data, target=target, out_dir=out, options=options)
    if result.recipe is None:
        raise ConfigError(f"The search for {target.describe()} finished no trial: {result.why()}")
    return result.recipe
