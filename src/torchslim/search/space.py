"""The search space: whole recipes, with per-layer ranges set by sensitivity.

A point of the space is a flat dict of choices; :meth:`SearchSpace.recipe` turns it into an
ordinary :class:`~torchslim.core.recipe.Recipe` (so any result reruns with ``compress --recipe``):

1. ``channel_pruning`` with a ratio per channel group (``ratio:<group>``, in ``[0, max]`` where
   ``max`` is the largest ratio the channel sensitivity curve of that group allows);
2. ``magnitude_pruning`` with a sparsity per layer (``sparsity:<layer>``, ranges from the
   unstructured curves), searched where zeros cost fewer bytes: float layers (sparse codecs), the
   k-means codebook (a pinned 0.0 centroid) and entropy-coded uniform codes (``entropy_code``, when
   registered: Deep Compression's last stage); packed uniform codes are dense and binary /
   power-of-two levels have no zero, so it is not searched there;
3. a short recovery: ``finetune`` or ``distill`` from the original (``distill``), ``steps`` optimizer
   steps (the chosen point gets the full budget);
4. quantization: the level type (``uniform`` through ``quantize``, with ``bits:<layer>`` per layer from
   the bit-width curves, ``activations`` int8 or float, post-training or ``qat`` with the recovery's
   budget; or a level technique registered in
   ``core.technique.TECHNIQUES`` at run time, e.g. ``kmeans_quant``, ``pow2_quant``, ``binarize``,
   ``ternarize``), or none (``float``).

Choices that sensitivity settles are not searched: a range of one value is fixed, and layers below
`min_share` of the weights keep 8 bits (they cannot change the size). Nor is ``entropy_code`` when
the target bounds or minimises size (``entropy_code_always``): it is lossless, so a point without it
is the same model in more bytes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from torchslim.core.recipe import Recipe, Step
from torchslim.core.targets import Targets
from torchslim.core.technique import TECHNIQUES
from torchslim.pruning import SensitivityResult
from torchslim.search.bits import BitSensitivity

BIT_CHOICES = (2, 3, 4, 5, 6, 8)
LEVEL_BITS = (2, 3, 4)
"""Bit-widths offered to a registered level technique that has a ``bits`` field (one for all layers)."""
LEVEL_TECHNIQUES = ("kmeans_quant", "pow2_quant", "binarize", "ternarize")
"""Level types added as techniques of their own; searched when registered."""
DISTILL_TEMPERATURE = 2.0
DISTILL_ALPHA = 0.5
"""Distillation settings of the trials (the ones the distillation benchmark measured ahead of plain
fine-tuning); the ``distill`` step's own adaptive defaults are a separate feature."""


@dataclasses.dataclass
class SearchSpace:
    """Per-layer ranges and the recipe-level choices (see the module docstring)."""

    channel_max: dict[str, float]
    bit_choices: dict[str, list[int]]
    sparsity_max: dict[str, float]
    level_types: list[str]
    finetune_steps: list[int]
    distill: list[bool] = dataclasses.field(default_factory=lambda: [False, True])
    activations: list[str] = dataclasses.field(default_factory=lambda: ["int8", "float"])
    qat: list[bool] = dataclasses.field(default_factory=lambda: [False, True])
    outlier_channels: list[int] = dataclasses.field(default_factory=lambda: [8])
    entropy_code: bool = False
    entropy_code_always: bool = False
    lr: float = 1e-3

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SearchSpace:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def suggest(self, trial: Any) -> dict[str, Any]:
        """One point, sampled through an optuna trial (define-by-run: sparsities only where zeros save bytes)."""
        params: dict[str, Any] = {}
        for group, high in self.channel_max.items():
            params[f"ratio:{group}"] = trial.suggest_float(f"ratio:{group}", 0.0, high, step=0.05)
        params["levels"] = trial.suggest_categorical("levels", self.level_types)
        if self.entropy_code and params["levels"] != "float":
            if self.entropy_code_always:  # lossless: it only makes the artifact smaller
                params["entropy_code"] = True
            else:
                params["entropy_code"] = trial.suggest_categorical("entropy_code", [False, True])
        if _zeros_save_bytes(params):
            for layer, high in self.sparsity_max.items():
                params[f"sparsity:{layer}"] = trial.suggest_float(f"sparsity:{layer}", 0.0, high, step=0.05)
        if params["levels"] == "uniform":
            for layer, choices in self.bit_choices.items():
                if len(choices) > 1:
                    params[f"bits:{layer}"] = trial.suggest_categorical(f"bits:{layer}", choices)
            params["activations"] = trial.suggest_categorical("activations", self.activations)
            if params["activations"] == "int8" and len(self.outlier_channels) > 1:
                params["outliers"] = trial.suggest_categorical("outliers", self.outlier_channels)
            params["qat"] = trial.suggest_categorical("qat", self.qat)
        elif params["levels"] != "float" and "bits" in TECHNIQUES.config_type(params["levels"]).field_names():
            name = f"bits:{params['levels']}"
            params[name] = trial.suggest_categorical(name, list(LEVEL_BITS))
        params["steps"] = trial.suggest_categorical("steps", self.finetune_steps)
        params["distill"] = trial.suggest_categorical("distill", self.distill)
        return params

    def seeds(self) -> list[dict[str, Any]]:
        """Starting points read off the sensitivity curves: every range at its safe maximum, at half
        of it, and int8 without pruning; enqueued before the sampler takes over."""
        out = []
        for fraction, fewest_bits, qat in ((1.0, True, True), (0.5, True, False), (0.0, False, False)):
            point: dict[str, Any] = {
                f"ratio:{g}": round(round(fraction * high / 0.05) * 0.05, 2) for g, high in self.channel_max.items()
            }
            point["levels"] = "uniform"
            for layer, choices in self.bit_choices.items():
                if len(choices) > 1:
                    point[f"bits:{layer}"] = min(choices) if fewest_bits else max(choices)
            point["activations"] = "int8"
            point["entropy_code"] = self.entropy_code_always
            point["qat"] = qat and True in self.qat
            point["steps"] = max(self.finetune_steps)
            point["distill"] = False
            if point not in out:
                out.append(point)
        if len(self.outlier_channels) > 1:  # the cheaper int8 variant too (no outlier channels split)
            for point in list(out):
                point["outliers"] = self.outlier_channels[0]
                unsplit = point | {"outliers": min(self.outlier_channels)}
                if unsplit not in out:
                    out.insert(out.index(point) + 1, unsplit)
        half = {k: v for k, v in out[min(1, len(out) - 1)].items() if k.startswith("ratio:")}
        for levels in ("binarize", "kmeans_quant"):  # the registered level types, from the same half-pruned start
            if levels in self.level_types:
                point = {**half, "levels": levels, "bits:kmeans_quant": 4, "entropy_code": self.entropy_code}
                if levels in SPARSE_LEVELS:
                    point |= {f"sparsity:{layer}": 0.5 * high for layer, high in self.sparsity_max.items()}
                out.insert(2, point | {"steps": max(self.finetune_steps), "distill": False})
        return out

    @property
    def trains(self) -> bool:
        """Whether points train at all (recovery, QAT, a level technique's own training)."""
        return max(self.finetune_steps, default=0) > 0

    def fit_to(self, *, bounded: set[str], metric: str) -> None:
        """Drop the choices this target and quality metric settle, in place.

        * Size unbounded: no entropy coding (it only changes the bytes on disk).
        * Size and energy unbounded (latency or MACs only): every layer keeps 8 bits and the level
          types are uniform or float (fewer bits and codebooks run on the same int8 or float kernels,
          so they can only cost accuracy).
        * Quality by cosine (a model without a classification head): no training in the trials, since
          the data's labels do not fit the model's output; post-training quantization only.
        * Nothing to prune (no channel or sparsity range): no ``float`` level, which would be the
          original model.
        """
        if "size" not in bounded:  # decoded when loaded: it changes nothing else
            self.entropy_code = False
        if not bounded & {"size", "energy"}:
            self.bit_choices = {layer: [8] for layer in self.bit_choices}
            self.level_types = [t for t in self.level_types if t in ("uniform", "float")]
        if metric == "cosine":
            self.finetune_steps = [0]
            self.qat = [False]
            self.distill = [False]
        if not self.channel_max and not self.sparsity_max and len(self.level_types) > 1:
            self.level_types = [t for t in self.level_types if t != "float"]  # float unpruned: the original

    def recipe(self, params: Mapping[str, Any], *, train: Mapping[str, Any] | None = None) -> Recipe:
        """The recipe of `params`; `train` replaces the recovery's ``train:`` section (the chosen
        point's full fine-tune), else ``steps`` optimizer steps within one epoch."""
        steps: list[Step] = []
        ratios = {g: float(params.get(f"ratio:{g}", 0.0)) for g in self.channel_max}
        ratios = {g: r for g, r in ratios.items() if r > 0}
        if ratios:
            steps.append(
                _step(
                    "channel_pruning",
                    {"ratio": 0.0, "per_layer": ratios, "train": {"epochs": 0}},
                    Targets(exclude=("role:head",)),
                )
            )
        levels = str(params.get("levels", "uniform"))
        if _zeros_save_bytes(params):
            sparsity = {k.split(":", 1)[1]: float(v) for k, v in params.items() if k.startswith("sparsity:") and v > 0}
            if sparsity:
                config = {"sparsity": 0.0, "scope": "layer", "per_layer": sparsity}
                steps.append(_step("magnitude_pruning", config, Targets(names=tuple(sparsity))))
        recovery = self._recovery(params, train)
        if recovery is not None:
            steps.append(recovery)
        quantize = self._quantize(params, levels, train)
        if quantize is not None:
            steps.append(quantize)
            if params.get("entropy_code"):
                steps.append(_step("entropy_code", {}, None))
        if not steps:  # no pruning, no training, float: the original, as a one-step recipe
            steps.append(_step("finetune", {"train": {"epochs": 0}}, None))
        return Recipe(steps)

    def _recovery(self, params: Mapping[str, Any], train: Mapping[str, Any] | None) -> Step | None:
        if not self.trains:
            return None
        section: dict[str, Any] = (
            dict(train) if train is not None else {"epochs": 1, "max_steps": int(params.get("steps", 0))}
        )
        if train is None and not section["max_steps"]:
            return None
        section.setdefault("lr", self.lr)
        if params.get("distill"):
            return _step(
                "distill", {"temperature": DISTILL_TEMPERATURE, "alpha": DISTILL_ALPHA, "train": section}, None
            )
        return _step("finetune", {"train": section}, None)

    def _quantize(self, params: Mapping[str, Any], levels: str, train: Mapping[str, Any] | None) -> Step | None:
        if levels == "float":
            return None
        if levels != "uniform":
            own: dict[str, Any] = {"bits": int(params[f"bits:{levels}"])} if f"bits:{levels}" in params else {}
            if "train" in TECHNIQUES.config_type(levels).field_names():  # its own training, within the trial's budget
                own["train"] = (
                    dict(train) if train is not None else {"epochs": 1, "max_steps": int(params.get("steps") or 0)}
                )
                trains = self.trains and own["train"].get("max_steps", 1)
                own["train"] = own["train"] if trains else {"epochs": 0}
            return _step(levels, own, Targets(exclude=("role:head",)))
        layer_bits = {layer: int(choices[0]) for layer, choices in self.bit_choices.items() if len(choices) == 1}
        layer_bits.update({k.split(":", 1)[1]: int(v) for k, v in params.items() if k.startswith("bits:")})
        layer_bits = {k: v for k, v in layer_bits.items() if v != 8}
        activations = {"mode": "auto"} if params.get("activations", "int8") == "int8" else None
        config: dict[str, Any] = {"mode": "ptq", "weights": {"bits": 8, "layer_bits": layer_bits}}
        if "outliers" in params:
            config["outlier_channels"] = int(params["outliers"])
        if params.get("qat"):  # quantization-aware training, same budget as the recovery (QAT's own lr)
            steps = int(params.get("steps") or 0)
            config["mode"] = "qat"
            config["train"] = (
                dict(train) if train is not None else {"epochs": 1 if steps else 0, "max_steps": steps or None}
            )
        return _step("quantize", config | {"activations": activations}, None)


SPARSE_LEVELS = ("float", "kmeans_quant")
"""Level types whose storage keeps zeros cheap (sparse codecs; a codebook with a pinned 0.0 centroid).
Binary and power-of-two levels have no zero, so pruning masks would only cost accuracy there."""


def _zeros_save_bytes(params: Mapping[str, Any]) -> bool:
    """Per-layer sparsity is searched where zeros cost fewer bytes: sparse float layers, a codebook
    with a zero centroid, and uniform codes that are entropy-coded."""
    levels = params.get("levels", "uniform")
    return levels in SPARSE_LEVELS or (levels == "uniform" and bool(params.get("entropy_code")))


def _step(technique: str, config: Mapping[str, Any], targets: Targets | None) -> Step:
    return Step(TECHNIQUES.config_type(technique).from_dict(dict(config)), targets)


def registered_level_types() -> list[str]:
    """``uniform``, the level techniques registered now, and ``float`` (no quantization)."""
    return ["uniform", *[name for name in LEVEL_TECHNIQUES if name in TECHNIQUES], "float"]


def layers_with_choices(params: dict[str, int], *, max_layers: int = 8, min_share: float = 0.02) -> list[str]:
    """The layers a search gives their own choices: the `max_layers` largest (by weights in `params`)
    that hold at least `min_share` of all the weights; the rest keep 8 bits and their weights."""
    total = sum(params.values()) or 1
    largest = sorted(params, key=lambda k: -params[k])[:max_layers]
    return [k for k in largest if params[k] / total >= min_share]


def build_space(
    *,
    channels: SensitivityResult | None,
    sparsity: SensitivityResult | None,
    bits: BitSensitivity | None,
    range_drop: float,
    finetune_steps: Sequence[int],
    min_share: float = 0.02,
    max_layers: int = 8,
) -> SearchSpace:
    """Ranges from the sensitivity curves: a group or layer gets the largest ratio / sparsity, or the
    fewest bits, whose drop without fine-tuning stays within `range_drop` (quality units); only the
    `max_layers` largest layers get their own bit-width and sparsity choices
    (:func:`layers_with_choices`)."""
    channel_max = {g: r for g, r in (channels.max_sparsity(range_drop) if channels else {}).items() if r > 0}
    bit_choices: dict[str, list[int]] = {}
    sparsity_max: dict[str, float] = {}
    if bits is not None:
        chosen = set(layers_with_choices(bits.params, max_layers=max_layers, min_share=min_share))
        fewest = bits.min_bits(range_drop)
        for layer in bits.params:
            if layer not in chosen:
                bit_choices[layer] = [8]
            else:  # a layer without a curve (its analysis ran out of time) keeps every choice
                bit_choices[layer] = [b for b in BIT_CHOICES if b >= fewest.get(layer, min(BIT_CHOICES))] or [8]
    if sparsity is not None:
        safe = sparsity.max_sparsity(range_drop)
        prunable = layers_with_choices(sparsity.params, max_layers=max_layers, min_share=min_share)
        sparsity_max = {k: safe[k] for k in prunable if safe.get(k, 0) > 0}
    return SearchSpace(
        channel_max=channel_max,
        bit_choices=bit_choices,
        sparsity_max=sparsity_max,
        level_types=registered_level_types(),
        entropy_code="entropy_code" in TECHNIQUES,
        finetune_steps=sorted({int(s) for s in finetune_steps}),
    )
