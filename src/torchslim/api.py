"""The narrow entry points: `analyze` and `compress` (``(model, data, ...)`` plus keyword-only options)."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from torchslim.core.context import Context, DataSplits
from torchslim.core.errors import ConfigError, DataError, TorchSlimError, did_you_mean
from torchslim.core.progress import phase
from torchslim.core.recipe import Recipe
from torchslim.core.technique import TECHNIQUES, StepOutcome
from torchslim.io.artifact import saved_bytes
from torchslim.io.weights import check_finite_model
from torchslim.measure.payback import energy_section
from torchslim.measure.run_energy import RunEnergyMeter
from torchslim.report import Report
from torchslim.report.verdicts import DEFAULT_MAX_DROP
from torchslim.result import CompressionResult
from torchslim.search import recipe_for_target


def as_splits(data: Any) -> DataSplits | None:
    """Accept `DataSplits`, a single loader / iterable of ``(inputs, labels)`` batches, or None.

    A single loader serves every split; the report then notes that accuracy was measured on the
    data used for compression.
    """
    if data is None or isinstance(data, DataSplits):
        return data
    if isinstance(data, (str, bytes)) or not isinstance(data, Iterable):
        raise DataError(
            f"data must be a DataSplits or an iterable of (inputs, labels) batches, got {type(data).__name__}."
        )
    return DataSplits(train=data, calibration=data, validation=data, test=data, name="user data")


def _first_batch(loader: Iterable[Any]) -> Any:
    for batch in loader:
        return batch
    raise DataError("The data loader is empty.")


def resolve_example_input(model: nn.Module, *, splits: DataSplits | None, batch_size: int = 1) -> Any:
    """An input of `batch_size` samples: the model's built-in example, else the first data batch."""
    from torchslim.models import example_input, get_model_spec

    if get_model_spec(model) is not None:
        return example_input(model, batch_size=batch_size)
    for split in ("calibration", "train", "test", "validation"):
        loader = getattr(splits, split, None) if splits is not None else None
        if loader is None:
            continue
        inputs = _first_batch(loader)[0]
        if isinstance(inputs, torch.Tensor):
            reps = -(-batch_size // inputs.shape[0])
            return inputs.repeat(reps, *([1] * (inputs.dim() - 1)))[:batch_size]
        if isinstance(inputs, dict):
            return {k: v[:batch_size] for k, v in inputs.items()}
        tokenize = getattr(model, "tokenize", None)  # text models turn raw strings into tensors
        if isinstance(inputs, (list, tuple)) and callable(tokenize):
            texts = list(inputs) * (-(-batch_size // len(inputs)))
            return dict(tokenize(texts[:batch_size]))
    raise DataError(
        "Cannot build an example input: the model is not a built-in one and no data was given. "
        "Pass example_input=... or data."
    )


def check_model_accepts_data(model: nn.Module, splits: DataSplits | None) -> None:
    """Run `model` on the first test/calibration batch; a failure becomes a clear `DataError`.

    Catches a model/data mismatch (e.g. a 28x28 model on 8x8 images) before any work, with the
    shapes named, instead of a raw matrix-shape error deep inside a forward pass.
    """
    from torchslim.core.batches import call_model

    for split in ("test", "calibration", "train", "validation"):
        loader = getattr(splits, split, None) if splits is not None else None
        if loader is None:
            continue
        inputs = _first_batch(loader)[0]
        flags = [(m, m.training) for m in model.modules()]
        try:
            model.eval()
            with torch.no_grad():
                call_model(model, inputs[:2] if isinstance(inputs, (torch.Tensor, list)) else inputs)
        except (RuntimeError, ValueError, TypeError, IndexError) as exc:
            shape = tuple(inputs.shape[1:]) if isinstance(inputs, torch.Tensor) else type(inputs).__name__
            raise DataError(
                f"The model ({type(model).__name__}) cannot run on the {split} data of "
                f"{getattr(splits, 'name', 'the dataset')!r} (samples of shape {shape}): {str(exc).splitlines()[0]}"
            ) from None
        finally:
            for module, flag in flags:
                module.training = flag
        return


RUNTIMES = ("auto", "pytorch", "onnxruntime")
"""Where latency is measured: PyTorch eager, ``auto``, or a runtime backend of :mod:`torchslim.deploy`
(any registered backend name is accepted; onnxruntime is the one shipped)."""

AUTO_BACKEND = "onnxruntime"
"""The backend ``runtime="auto"`` tries first."""


def _runtime_backend(runtime: str) -> str | None:
    """The deploy backend name of `runtime` (None for PyTorch eager); an unknown runtime is a ConfigError."""
    from torchslim.deploy import backend_names

    if runtime == "pytorch":
        return None
    if runtime == "auto":
        return AUTO_BACKEND
    if runtime not in backend_names():
        known = sorted({*RUNTIMES, *backend_names()})
        raise ConfigError(f"runtime={runtime!r} must be one of {known}." + did_you_mean(runtime, known))
    return runtime


def analyze(
    model: nn.Module,
    data: Any = None,
    *,
    example_input: Any = None,
    batch_size: int = 1,
    threads: int | None = None,
    repeats: int = 20,
    eval_split: str = "test",
    energy_profile: str = "horowitz-45nm",
    runtime: str = "pytorch",
    onnx_path: str | Path | None = None,
    allow_nonfinite: bool = False,
) -> Any:
    """Measure `model` (read-only): params, non-zeros, MACs, bytes on disk, latency, energy, accuracy.

    `runtime` names where latency is measured: ``pytorch`` (eager), ``onnxruntime`` (the model is
    exported once by :mod:`torchslim.deploy`, int8 QDQ for quantized layers; an export failure is an
    error) or ``auto`` (onnxruntime when the export works, else PyTorch eager). `onnx_path` times an
    ONNX file already exported from `model` instead. PyTorch eager latency is always kept in
    ``latency_eager_ms``; ``latency_runtime`` says which runtime ``latency_ms`` comes from. NaN or
    Inf weights are refused unless `allow_nonfinite`.
    """
    from torchslim.core.errors import ModelError

    check_finite_model(model, source="the model to analyze", allow=allow_nonfinite)
    from torchslim.deploy import Deployment, deploy_file, deploy_for_timing

    backend = _runtime_backend(runtime)
    splits = as_splits(data)
    check_model_accepts_data(model, splits)
    if example_input is None:
        example_input = resolve_example_input(model, splits=splits, batch_size=batch_size)
    loader = getattr(splits, eval_split, None) if splits is not None else None
    with tempfile.TemporaryDirectory(prefix="torchslim-deploy-") as tmp:
        deployment: Deployment | None = None
        if onnx_path is not None:
            deployment = deploy_file(onnx_path, example_input, backend="onnxruntime")
        elif backend is not None:
            deployment, reason = deploy_for_timing(model, example_input, tmp, backend=backend)
            if deployment is None and runtime != "auto":
                raise ModelError(f"The {backend} export for {backend} latency failed: {reason}")
        return _measure(
            model,
            example_input,
            loader=loader,
            deployment=deployment,
            batch_size=batch_size,
            threads=threads,
            repeats=repeats,
            profile=energy_profile,
        )


def _measure(
    model: nn.Module,
    example_input: Any,
    *,
    loader: Any,
    deployment: Any,
    batch_size: int,
    threads: int | None,
    repeats: int,
    profile: str = "horowitz-45nm",
    artifact_config: dict[str, Any] | None = None,
) -> Any:
    """:func:`torchslim.measure.analyze` (latency on `deployment`'s runtime when given) plus the artifact's bytes."""
    from torchslim.measure import analyze as measure_model

    stats = measure_model(
        model,
        example_input=example_input,
        loader=loader,
        runtime_timer=deployment.timer if deployment is not None else None,
        latency_batch_size=batch_size,
        threads=threads,
        repeats=repeats,
        profile=profile,
    )
    return dataclasses.replace(stats, bytes=saved_bytes(model, config=artifact_config))


def _deploy_both(
    model: nn.Module, work: nn.Module, example: Any, tmp: str, *, runtime: str, notes: list[str], quiet: bool
) -> list[Any]:
    """Both models exported to the runtime's backend, or ``[None, None]`` (PyTorch eager) when either
    export fails under ``auto`` (`notes` says why); a failed export for a named runtime is an error."""
    from torchslim.deploy import Deployment, deploy_for_timing

    backend = _runtime_backend(runtime)
    deployed: list[Deployment | None] = [None, None]
    if backend is None:
        return deployed
    reasons: list[str | None] = [None, None]
    for i, (m, which) in enumerate(((model, "original"), (work, "compressed"))):
        with phase(f"export the {which} model to {backend}", quiet=quiet):
            deployed[i], reasons[i] = deploy_for_timing(m, example, tmp, backend=backend)
    if deployed[0] is None or deployed[1] is None:
        reason = reasons[0] or reasons[1]
        if runtime != "auto":
            raise ConfigError(f"runtime={runtime!r} but the export for it failed: {reason}")
        notes.append(f"latency measured in PyTorch eager for both models: the {backend} export failed ({reason})")
        return [None, None]
    return deployed


def _measure_pair(
    model: nn.Module,
    work: nn.Module,
    splits: DataSplits | None,
    *,
    example: Any,
    runtime: str,
    notes: list[str],
    batch_size: int,
    threads: int | None,
    repeats: int,
    recipe: Recipe,
    quiet: bool = True,
) -> tuple[Any, Any]:
    """Measure the original and the compressed model on the same runtime; each is exported once.
    The compressed model's bytes are those of the files `CompressionResult.save` writes (its manifest
    holds the recipe).

    With ``auto``, both go to the deploy backend when both export, else both are measured in
    PyTorch eager and `notes` says why.
    """
    from torchslim.deploy import kernel_census

    backend = _runtime_backend(runtime)
    for m in (model, work):
        check_model_accepts_data(m, splits)
    loader = splits.test if splits is not None and _labelled(splits) else None
    with tempfile.TemporaryDirectory(prefix="torchslim-deploy-") as tmp:
        deployed = _deploy_both(model, work, example, tmp, runtime=runtime, notes=notes, quiet=quiet)
        configs = (None, {"recipe": recipe.to_dict()})
        measured = []
        for m, d, c, which in zip((model, work), deployed, configs, ("original", "compressed"), strict=True):
            runtime_name = backend if d is not None else "PyTorch eager"
            label = f"measure the {which} model (latency on {runtime_name}" + (", accuracy)" if loader else ")")
            with phase(label, quiet=quiet):
                measured.append(
                    _measure(
                        m,
                        example,
                        loader=loader,
                        deployment=d,
                        batch_size=batch_size,
                        threads=threads,
                        repeats=repeats,
                        artifact_config=c,
                    )
                )
        if deployed[1] is not None and deployed[1].backend.name == "onnxruntime":
            measured[1] = dataclasses.replace(measured[1], kernels=kernel_census(work, deployed[1].path))
    return measured[0], measured[1]


def run_recipe(
    model: nn.Module, recipe: Recipe, *, context: Context, allow_nonfinite: bool = False
) -> tuple[nn.Module, list[dict[str, Any]]]:
    """Apply each step's registered handler in order; return the model and per-step facts.

    Every step's targets are checked against the model before any step runs, so a typo in the
    last step fails before the first one has spent any time. A step that leaves NaN or Inf in the
    model's weights is an error naming the step (unless `allow_nonfinite`).
    """
    for index, step in enumerate(recipe.steps):
        if step.targets is not None:
            try:
                step.targets.resolve(model)
            except TorchSlimError as exc:
                raise type(exc)(f"steps[{index}] ({step.technique}): {exc}") from None
    steps: list[dict[str, Any]] = []
    for index, step in enumerate(recipe.steps):
        handler = TECHNIQUES.handler_for(step.config)
        started = time.perf_counter()
        step_context = context
        if context.run_dir is not None:
            step_context = context.replace(run_dir=Path(context.run_dir) / f"step{index}-{step.technique}")
        with phase(f"step {index + 1}/{len(recipe.steps)} {step.technique}", quiet=context.quiet):
            outcome = handler(model, step.config, targets=step.targets, context=step_context)
        if not isinstance(outcome, StepOutcome):
            raise TypeError(f"Handler of {step.technique!r} returned {type(outcome).__name__}, not StepOutcome.")
        model = outcome.model
        check_finite_model(model, source=f"steps[{index}] ({step.technique})", allow=allow_nonfinite)
        steps.append(
            {
                "index": index,
                "technique": step.technique,
                "config": step.config.to_dict(),
                "targets": step.targets.to_dict() if step.targets else None,
                "seconds": time.perf_counter() - started,
                "layers": outcome.layers,
                "skipped": outcome.skipped,
                "info": outcome.info,
            }
        )
    return model, steps


def compress(
    model: nn.Module,
    data: Any,
    *,
    recipe: Recipe | str | Path | None = None,
    seed: int = 0,
    run_dir: str | Path | None = None,
    threads: int | None = None,
    batch_size: int = 1,
    repeats: int = 20,
    quiet: bool = False,
    model_name: str | None = None,
    runtime: str = "auto",
    max_drop: float = DEFAULT_MAX_DROP,
    allow_nonfinite: bool = False,
    grid_intensity: float | None = None,
    target: Any = None,
    search: Any = None,
) -> CompressionResult:
    # long: one keyword option a line (14 of the lines); the body composes the phases in order
    """Measure `model`, run `recipe` on a copy of it, measure again, and return the result.

    The user's model is never modified. `recipe` is a `Recipe`, a YAML file path, or the name of a
    shipped recipe. Latency before and after is measured on the same runtime: with ``auto``,
    onnxruntime when both models export to ONNX, else PyTorch eager for both (the report says why).
    Unlabelled data (a folder of loose images) is judged by agreement with the original model, and
    its train split, if any, is labelled with the original model's predictions. `max_drop` is the
    accuracy (or 1 - top-1 agreement) drop past which the report warns. NaN or Inf weights, in
    `model` or after any step, are refused unless `allow_nonfinite`. ``report.energy`` holds the steps'
    energy (measured or estimated, labelled; :mod:`torchslim.measure.run_energy`), its emissions at
    `grid_intensity` gCO2e/kWh and the inferences after which it pays back. `target` (``ts.Target`` or
    ``"size=15x"``) instead of a recipe: :mod:`torchslim.search` chooses it (`search`: its SearchOptions).
    """
    if target is not None:
        recipe = recipe_for_target(model, as_splits(data), target, recipe=recipe, options=search, run_dir=run_dir)
    if recipe is None:
        raise ConfigError("compress needs recipe=... (a Recipe, a YAML file or a shipped recipe name).")
    recipe = load_recipe(recipe)
    check_finite_model(model, source="the model to compress", allow=allow_nonfinite)
    notes: list[str] = []
    splits = _labelled_splits(as_splits(data), model, notes)
    with _torch_threads(threads):
        check_model_accepts_data(model, splits)
        example = resolve_example_input(model, splits=splits, batch_size=batch_size)
        _runtime_backend(runtime)
        context = Context(data=splits, seed=seed, threads=threads, quiet=quiet, example_input=example, teacher=model)
        if run_dir:
            context = context.replace(run_dir=Path(run_dir))
        with RunEnergyMeter(grid_intensity=grid_intensity) as meter:  # the steps' energy, measurement excluded
            work, steps = run_recipe(copy.deepcopy(model), recipe, context=context, allow_nonfinite=allow_nonfinite)
        work.eval()
        before, after = _measure_pair(
            model,
            work,
            splits,
            example=example,
            runtime=runtime,
            batch_size=batch_size,
            threads=threads,
            repeats=repeats,
            notes=notes,
            recipe=recipe,
            quiet=quiet,
        )
        after = _with_agreement(after, model, work, splits)
    report = _report(
        model, model_name, splits, before, after, steps=steps, recipe=recipe, notes=notes, max_drop=max_drop
    )
    report.energy = energy_section(meter.result, report.before, report.after, scope="compression: the recipe's steps")
    return CompressionResult(model=work, report=report, recipe=recipe, example_input=example, original=model)


def _labelled_splits(splits: DataSplits | None, model: nn.Module, notes: list[str]) -> DataSplits | None:
    """`splits` as given; marked unlabelled when `model` has no head for the labels (decided before
    any step runs); unlabelled with a train split: that split labelled by `model` (said in `notes`)."""
    from torchslim.measure import head_mismatch

    if splits is not None and _labelled(splits):
        reason = head_mismatch(model, resolve_example_input(model, splits=splits), splits.num_classes)
        if reason is not None:
            notes.append(f"accuracy not measured: {reason}; judged by agreement with the original model")
            splits = dataclasses.replace(splits, labelled=False)
    if splits is None or _labelled(splits) or splits.train is None:
        return splits
    from torchslim.data import with_pseudo_labels

    notes.append("the data has no labels: the train split was labelled with the original model's predictions")
    return with_pseudo_labels(splits, model)


def _labelled(splits: DataSplits) -> bool:
    from torchslim.data import is_labelled

    return is_labelled(splits)


def _with_agreement(after: Any, model: nn.Module, work: nn.Module, splits: DataSplits | None) -> Any:
    """`after` with the compressed model's agreement with the original (top-1/5, cosine, SQNR, KL) on
    held-out data (the test split, else validation; never calibration or train data)."""
    from torchslim.measure import compare_models

    if splits is None:
        return after
    held_out = splits.test if splits.test is not None else splits.validation
    if held_out is None or held_out is splits.train or held_out is splits.calibration:
        return after
    agreement = compare_models(model, work, held_out)
    return dataclasses.replace(after, agreement=agreement.to_dict())


@contextlib.contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """``torch.set_num_threads(threads)`` for the block (when given); the previous count restored after."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _report(
    model: nn.Module,
    model_name: str | None,
    splits: DataSplits | None,
    before: Any,
    after: Any,
    *,
    steps: list[dict[str, Any]],
    recipe: Recipe,
    notes: list[str],
    max_drop: float = DEFAULT_MAX_DROP,
) -> Report:
    """The before/after report of :func:`compress`."""
    from torchslim.models import get_model_spec

    spec = get_model_spec(model)
    name = model_name or (spec or {}).get("name") or type(model).__name__
    if splits is not None and splits.test is splits.train and splits.test is not None:
        notes.append("accuracy was measured on the same data used for compression (no separate test split given)")
    return Report(
        model=name,
        before=before.to_dict(),
        after=after.to_dict(),
        steps=steps,
        recipe=recipe.to_dict(),
        dataset=splits.name if splits is not None else None,
        notes=notes,
        num_classes=splits.num_classes if splits is not None else None,
        max_drop=max_drop,
    )


def load_recipe(recipe: Recipe | str | Path) -> Recipe:
    """A `Recipe` as is; a path to a YAML file; or the name of a shipped recipe."""
    if isinstance(recipe, Recipe):
        return recipe
    path = Path(recipe)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        return Recipe.from_file(path)
    from torchslim.recipes import shipped_recipe

    return shipped_recipe(str(recipe))
