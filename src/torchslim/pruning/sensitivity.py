"""Per-layer sensitivity analysis: accuracy versus sparsity, one layer pruned at a time.

For each selected layer ``l`` and sparsity ``s``, the model is pruned *only* at ``l`` (magnitude,
unstructured; or, with ``kind="channels"``, the channel group containing ``l``, physically) and
evaluated; ``drop_l(s) = acc(dense) - acc(pruned at l, s)``. Layers whose curve stays flat can take
high sparsity; steep ones should be spared (Han et al. 2015, section 4, figure 6; Li et al. 2017,
"Pruning filters for efficient ConvNets", section 4.1). The result is saved as JSON plus a PNG
plot, and :meth:`SensitivityResult.max_sparsity` turns it into per-layer sparsities for a recipe
(``per_layer``), which the automated search builds on.

The model passed in is never changed: work happens on a copy.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from torchslim.core.context import Context
from torchslim.core.errors import ConfigError, ModelError, TargetError
from torchslim.core.targets import Targets
from torchslim.pruning._select import select_layers
from torchslim.pruning.masks import dense_weight
from torchslim.pruning.unstructured import _smallest, unsupported_reason, weight_scores

DEFAULT_SPARSITIES = (0.25, 0.5, 0.75, 0.9)


@dataclasses.dataclass
class SensitivityResult:
    """Accuracy of the model with one layer (or channel group) pruned at each sparsity.

    Attributes:
        kind: ``unstructured`` (magnitude masks) or ``channels`` (physical channel groups).
        criterion: score used to choose what is pruned.
        sparsities: the x axis.
        baseline: accuracy of the unpruned model.
        curves: ``{layer: [accuracy at each sparsity]}``.
        params: ``{layer: weights in that layer (or group)}``.
        samples: evaluation samples per point.
        skipped: ``{layer: reason}`` for layers that could not be analysed.
    """

    kind: str
    criterion: str
    sparsities: list[float]
    baseline: float
    curves: dict[str, list[float]]
    params: dict[str, int]
    samples: int
    metric: str = "accuracy"
    skipped: dict[str, str] = dataclasses.field(default_factory=dict)

    def drops(self) -> dict[str, list[float]]:
        """``{layer: [baseline - accuracy at each sparsity]}``."""
        return {k: [self.baseline - a for a in v] for k, v in self.curves.items()}

    def max_sparsity(self, max_drop: float) -> dict[str, float]:
        """Per layer, the largest analysed sparsity whose accuracy drop is at most `max_drop` (0.0 if none).

        Points are scanned in increasing sparsity and the scan stops at the first that exceeds the
        budget, so a noisy recovery at a higher sparsity is not trusted.
        """
        out: dict[str, float] = {}
        order = sorted(range(len(self.sparsities)), key=lambda i: self.sparsities[i])
        for layer, accs in self.curves.items():
            best = 0.0
            for i in order:
                if self.baseline - accs[i] > max_drop + 1e-12:
                    break
                best = self.sparsities[i]
            out[layer] = best
        return out

    def ranking(self, at: float | None = None) -> list[tuple[str, float]]:
        """Layers from most to least sensitive by the accuracy drop at sparsity `at` (default: the highest)."""
        if not self.sparsities:
            return []
        at = max(self.sparsities) if at is None else at
        if at not in self.sparsities:
            raise ConfigError(f"sparsity {at} was not analysed; analysed: {self.sparsities}.")
        i = self.sparsities.index(at)
        return sorted(((k, self.baseline - v[i]) for k, v in self.curves.items()), key=lambda kv: -kv[1])

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "criterion": self.criterion,
            "metric": self.metric,
            "sparsities": list(self.sparsities),
            "baseline": self.baseline,
            "curves": {k: list(v) for k, v in self.curves.items()},
            "params": dict(self.params),
            "samples": self.samples,
            "skipped": dict(self.skipped),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SensitivityResult:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def plot(self, path: str | Path, *, title: str | None = None) -> Path:
        """Write the curves as a PNG (atomically) and return its path."""
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        from torchslim.io.atomic import atomic_path

        path = Path(path)
        fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=110)
        try:
            xs = [100 * s for s in self.sparsities]
            for layer, accs in self.curves.items():
                ax.plot(xs, [100 * a for a in accs], marker="o", linewidth=1.3, markersize=3.5, label=layer)
            ax.axhline(100 * self.baseline, color="black", linestyle="--", linewidth=1, label="unpruned")
            ax.set_xlabel("sparsity of the layer (%)" if self.kind == "unstructured" else "channels removed (%)")
            ax.set_ylabel(f"{self.metric} (%)")
            ax.set_title(title or f"Per-layer sensitivity ({self.kind}, {self.criterion})")
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=7, ncol=2 if len(self.curves) > 8 else 1, loc="lower left")
            fig.tight_layout()
            with atomic_path(path) as tmp:
                fig.savefig(tmp, format="png")
        finally:
            plt.close(fig)
        return path

    def save(self, directory: str | Path) -> dict[str, Path]:
        """Write ``sensitivity.json`` and ``sensitivity.png`` into `directory`; return their paths."""
        from torchslim.io.atomic import write_json

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        json_path = directory / "sensitivity.json"
        write_json(json_path, self.to_dict())
        return {"json": json_path, "png": self.plot(directory / "sensitivity.png")}


def _evaluate(model: nn.Module, loader: Iterable[Any], max_batches: int | None) -> tuple[float, int]:
    from torchslim.measure.accuracy import evaluate

    stats = evaluate(model, loader, max_batches=max_batches)
    return float(stats.accuracy), int(stats.samples)


def _check_sparsities(sparsities: Sequence[float]) -> list[float]:
    values = [float(s) for s in sparsities]
    if not values:
        raise ConfigError("sensitivity: sparsities must not be empty.")
    for s in values:
        if not 0.0 <= s < 1.0:
            raise ConfigError(f"sensitivity: sparsity {s!r} is out of range [0, 1).")
    return sorted(set(values))


def sensitivity(
    model: nn.Module,
    loader: Iterable[Any],
    *,
    sparsities: Sequence[float] = DEFAULT_SPARSITIES,
    targets: Targets | None = None,
    criterion: str = "l1",
    kind: str = "unstructured",
    example_input: Any = None,
    max_batches: int | None = None,
    seed: int = 0,
) -> SensitivityResult:
    """Accuracy on `loader` with each selected layer pruned alone at each of `sparsities`.

    `kind="unstructured"` masks the layer's lowest-scoring weights (`criterion` l1, l2 or random;
    default targets: every Linear/Conv); `kind="channels"` physically removes that fraction of the
    channels of each prunable channel group (`criterion` l1, l2, bn_scale or random; needs
    `example_input` unless the model is a built-in one) and keys the curves by the group's first
    layer. `max_batches` limits the evaluation cost per point.
    """
    values = _check_sparsities(sparsities)
    if kind not in ("unstructured", "channels"):
        raise ConfigError(f"sensitivity: kind={kind!r} must be 'unstructured' or 'channels'.")
    work = copy.deepcopy(model)
    work.eval()
    baseline, samples = _evaluate(work, loader, max_batches)
    points = _Points(work, loader, values, max_batches, baseline)
    if kind == "unstructured":
        curves, params, skipped = _unstructured_curves(points, targets, criterion, seed)
    else:
        curves, params, skipped = _channel_curves(points, targets, criterion, example_input, seed)
    return SensitivityResult(
        kind=kind,
        criterion=criterion,
        sparsities=values,
        baseline=baseline,
        curves=curves,
        params=params,
        samples=samples,
        skipped=skipped,
    )


@dataclasses.dataclass
class _Points:
    """The model copy, data and sparsities every curve of one sensitivity call is measured on."""

    work: nn.Module
    loader: Iterable[Any]
    values: list[float]
    max_batches: int | None
    baseline: float


Curves = tuple[dict[str, list[float]], dict[str, int], dict[str, str]]


def _unstructured_curves(points: _Points, targets: Targets | None, criterion: str, seed: int) -> Curves:
    """One curve per selected layer: its lowest-scoring weights zeroed, the layer restored afterwards."""
    work = points.work
    curves: dict[str, list[float]] = {}
    params: dict[str, int] = {}
    layers, skipped = select_layers(
        work, targets, reason_unsupported=lambda _n, m: unsupported_reason(m), technique="sensitivity"
    )
    generator = torch.Generator().manual_seed(int(seed))
    for name, module in layers:
        weight = dense_weight(module)
        original = weight.detach().clone()
        scores = weight_scores(cast(torch.Tensor, module.weight), criterion, generator=generator)
        params[name] = weight.numel()
        accs = []
        try:
            for s in points.values:
                with torch.no_grad():
                    weight.copy_(original * _smallest(scores, int(round(s * scores.numel()))))
                accs.append(_evaluate(work, points.loader, points.max_batches)[0])
        finally:
            with torch.no_grad():
                weight.copy_(original)
        curves[name] = accs
    return curves, params, skipped


def _channel_curves(points: _Points, targets: Targets | None, criterion: str, example_input: Any, seed: int) -> Curves:
    """One curve per prunable channel group: a copy with that fraction of the group's channels removed."""
    from torchslim.graph import ChannelGraph
    from torchslim.pruning.structured import example_input_for, prune_channels

    if criterion not in ("l1", "l2", "random", "bn_scale"):
        raise ConfigError(
            f"sensitivity(kind='channels'): criterion {criterion!r} must be one of l1, l2, bn_scale, random "
            "(taylor needs gradients; use channel_pruning for it)."
        )
    work = points.work
    if example_input is None:
        example_input = example_input_for(work, Context())
    graph = ChannelGraph(copy.deepcopy(work), example_input)
    selected = None if targets is None else {n for n, _ in targets.resolve(work)}
    curves: dict[str, list[float]] = {}
    params: dict[str, int] = {}
    skipped: dict[str, str] = {}
    for group in graph.groups():
        if group.output_coupled or group.attention or group.embedding:
            continue
        outs = list(group.out_layers)
        if selected is not None and not any(n in selected for n in outs):
            continue
        key = group.root
        params[key] = sum(p.numel() for n in group.layers for p in _own_params(work, n))
        accs = []
        try:
            for s in points.values:
                if s == 0.0:
                    accs.append(points.baseline)
                    continue
                pruned = prune_channels(
                    work, example_input, ratio=s, importance=criterion, targets=Targets(names=tuple(outs)), seed=seed
                ).model
                accs.append(_evaluate(pruned, points.loader, points.max_batches)[0])
        except (ModelError, TargetError) as exc:
            skipped[key] = str(exc)
            params.pop(key, None)
            continue
        curves[key] = accs
    if not curves:
        raise TargetError("sensitivity: no prunable channel group among the targets.")
    return curves, params, skipped


def _own_params(model: nn.Module, name: str) -> list[torch.Tensor]:
    try:
        module = model.get_submodule(name)
    except AttributeError:
        return []
    return list(module.parameters(recurse=False))
