"""Unstructured magnitude pruning (``magnitude_pruning``): layer-wise or global thresholds,
L1 / L2 / random scores, optional N:M semi-structured patterns, one-shot / iterative / AGP.

Magnitude pruning (Han, Pool, Tran & Dally 2015, "Learning both weights and connections for
efficient neural networks"; Han, Mao & Dally 2016, "Deep compression") removes the weights of
smallest score. For a target sparsity ``s`` over weights ``w_1..w_N``:

* ``scope="layer"``: in each layer, zero the ``round(s * N_l)`` weights of smallest score;
* ``scope="global"``: zero the ``round(s * N)`` weights of smallest score over all selected layers
  at once (one threshold; layers end up with different sparsities). Global ranking usually keeps
  more accuracy at high sparsity (Blalock et al. 2020, "What is the state of neural network
  pruning?"; Frankle & Carbin 2019 use it for convolutional nets).

Scores: ``l1`` = ``|w|``, ``l2`` = ``w^2`` (for single weights both give the same ranking, hence
the same masks; the names exist so a recipe reads like the structured ones), ``random`` = uniform
noise from a generator seeded with the run's seed (the baseline that magnitude must beat).

**N:M** (``pattern="2:4"``): in every group of M consecutive weights along the input dimension
(input channels for convolutions, at each kernel position), keep the N of largest magnitude
(Mishra et al. 2021, "Accelerating sparse deep neural networks", NVIDIA Ampere 2:4 sparsity).
Sparsity is exactly ``1 - N/M``; layers whose input size is not a multiple of M are skipped.

Masks are parametrizations (:mod:`torchslim.pruning.masks`), so they stay applied through
fine-tuning; once pruned, a weight stays pruned in later rounds (masks only shrink).
"""

from __future__ import annotations

import copy
import dataclasses
import re
from collections.abc import Mapping
from typing import Any, ClassVar, Literal, cast

import torch
from torch import nn

from torchslim.core.config import TechniqueConfig
from torchslim.core.context import Context
from torchslim.core.errors import ConfigError, ModelError, TargetError
from torchslim.core.targets import Targets
from torchslim.core.technique import TECHNIQUES, StepOutcome
from torchslim.pruning._select import match_per_layer, select_layers
from torchslim.pruning.masks import apply_mask, get_mask
from torchslim.pruning.recovery import RECOVERY_RENAMED, fill_train_defaults, no_recovery, recover
from torchslim.pruning.schedules import AGPHook, iterative_sparsities
from torchslim.train.config import TrainConfig

Criterion = Literal["l1", "l2", "random"]
NAME = "magnitude_pruning"
Scope = Literal["global", "layer"]


def parse_pattern(pattern: str) -> tuple[int, int]:
    """``"2:4" -> (2, 4)``; :class:`ConfigError` unless ``0 < N < M``."""
    match = re.fullmatch(r"\s*(\d+)\s*:\s*(\d+)\s*", str(pattern))
    if not match:
        raise ConfigError(f"MagnitudePruning.pattern={pattern!r} must look like 'N:M', e.g. '2:4'.")
    n, m = int(match.group(1)), int(match.group(2))
    if not 0 < n < m:
        raise ConfigError(f"MagnitudePruning.pattern={pattern!r} needs 0 < N < M.")
    return n, m


def weight_scores(weight: torch.Tensor, criterion: str, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-weight importance: ``|w|`` (l1), ``w^2`` (l2) or uniform noise (random)."""
    w = weight.detach().float()
    if criterion == "l1":
        return w.abs()
    if criterion == "l2":
        return w * w
    if criterion == "random":
        return torch.rand(w.shape, generator=generator).to(w.device)
    raise ConfigError(f"Unknown pruning criterion {criterion!r}; known: ['l1', 'l2', 'random'].")


def _smallest(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean keep-mask of `scores` with exactly its `k` smallest entries False."""
    flat = scores.reshape(-1)
    n = flat.numel()
    k = max(0, min(int(k), n))
    if k <= n - k:
        keep = torch.ones(n, dtype=torch.bool, device=flat.device)
        if k > 0:
            keep[torch.topk(flat, k, largest=False, sorted=False).indices] = False
    else:  # cheaper to pick the n - k survivors
        keep = torch.zeros(n, dtype=torch.bool, device=flat.device)
        if n - k > 0:
            keep[torch.topk(flat, n - k, largest=True, sorted=False).indices] = True
    return keep.reshape(scores.shape)


def _nm_view(weight: torch.Tensor, module: nn.Module) -> tuple[torch.Tensor, Any]:
    """Weight rearranged so groups of M run along the last dim; and the inverse function."""
    if isinstance(module, nn.modules.conv._ConvNd):
        dims = list(range(weight.dim()))
        perm = [0, *dims[2:], 1]  # [out, k..., in]
        inv = [0, weight.dim() - 1, *range(1, weight.dim() - 1)]
        return weight.permute(*perm), lambda t: t.permute(*inv)
    return weight, lambda t: t


def nm_mask(scores: torch.Tensor, module: nn.Module, n: int, m: int) -> torch.Tensor:
    """Keep-mask keeping the `n` largest scores in every group of `m` along the input dimension."""
    view, back = _nm_view(scores, module)
    shape = view.shape
    groups = view.reshape(-1, m)
    keep_idx = torch.topk(groups, n, dim=1, largest=True, sorted=False).indices
    mask = torch.zeros_like(groups, dtype=torch.bool)
    mask.scatter_(1, keep_idx, True)
    return back(mask.reshape(shape)).contiguous()


def unsupported_reason(module: nn.Module, pattern: tuple[int, int] | None = None) -> str | None:
    """Why `module` cannot be pruned unstructured (with the N:M `pattern`), or None."""
    weight = getattr(module, "weight", None)
    if not isinstance(weight, torch.Tensor):
        return f"{type(module).__name__} has no weight tensor"
    if not weight.is_floating_point():
        return f"{type(module).__name__} weight is {weight.dtype}, not floating point (already quantized?)"
    if weight.dim() < 2:
        return f"{type(module).__name__} has a 1-D weight (a norm scale), which magnitude pruning leaves alone"
    if pattern is not None:
        _, m = pattern
        if isinstance(module, nn.modules.conv._ConvNd):
            if module.transposed:
                return "N:M patterns are not defined for transposed convolutions"
            fan = weight.shape[1]
        elif isinstance(module, nn.Linear):
            fan = weight.shape[1]
        else:
            return f"N:M patterns apply to Linear and Conv layers, not {type(module).__name__}"
        if fan % m:
            return f"input size {fan} is not a multiple of M={m} for the {pattern[0]}:{m} pattern"
    return None


class MagnitudePruner:
    """Prunes a fixed list of layers to a requested sparsity with masks (monotone: masks only shrink).

    `per_layer` maps layer names to their own sparsity (they are then left out of the global
    ranking). `pattern` ``(N, M)`` makes every layer N:M sparse regardless of the requested sparsity.
    """

    def __init__(
        self,
        layers: list[tuple[str, nn.Module]],
        *,
        scope: str = "global",
        criterion: str = "l1",
        pattern: tuple[int, int] | None = None,
        per_layer: dict[str, float] | None = None,
        seed: int = 0,
    ) -> None:
        if scope not in ("global", "layer"):
            raise ConfigError(f"scope={scope!r} must be 'global' or 'layer'.")
        self.layers = list(layers)
        self.scope = scope
        self.criterion = criterion
        self.pattern = pattern
        self.per_layer = dict(per_layer or {})
        self.generator = torch.Generator().manual_seed(int(seed))
        self.sparsity = 0.0

    def _scores(self, module: nn.Module) -> torch.Tensor:
        weight = cast(torch.Tensor, module.weight)  # effective (masked) weight
        scores = weight_scores(weight, self.criterion, generator=self.generator)
        old = get_mask(module)
        if old is not None:
            scores = scores.masked_fill(~old, float("-inf"))
        return scores

    @torch.no_grad()
    def compute_masks(self, sparsity: float) -> dict[str, torch.Tensor]:
        """The keep-masks that bring each layer (or the pool) to `sparsity`; nothing is applied."""
        if not 0.0 <= sparsity < 1.0:
            raise ConfigError(f"sparsity={sparsity!r} is out of range [0, 1).")
        masks: dict[str, torch.Tensor] = {}
        if self.pattern is not None:
            n, m = self.pattern
            for name, module in self.layers:
                masks[name] = nm_mask(self._scores(module), module, n, m)
        else:
            pool = []
            for name, module in self.layers:
                s = self.per_layer.get(name)
                if s is None and self.scope == "global":
                    pool.append((name, module))
                    continue
                s = sparsity if s is None else s
                scores = self._scores(module)
                masks[name] = _smallest(scores, int(round(s * scores.numel())))
            if pool:
                pooled = [self._scores(mod) for _, mod in pool]
                flat = torch.cat([s.reshape(-1).cpu() for s in pooled])
                keep = _smallest(flat, int(round(sparsity * flat.numel())))
                offset = 0
                for (name, _), part in zip(pool, pooled, strict=True):
                    masks[name] = keep[offset : offset + part.numel()].reshape(part.shape).to(part.device)
                    offset += part.numel()
        for name, module in self.layers:
            old = get_mask(module)
            if old is not None:
                masks[name] = masks[name] & old
            if masks[name].numel() and not bool(masks[name].any()):
                raise ModelError(
                    f"magnitude pruning at sparsity {sparsity:g} ({self.scope} scope) would zero every weight of "
                    f"layer {name!r}, which disconnects the network; lower the sparsity, use scope='layer' "
                    "or give the layer its own per_layer sparsity."
                )
        return masks

    def prune_to(self, sparsity: float) -> dict[str, float]:
        """Apply masks for `sparsity`; return the resulting sparsity per layer."""
        masks = self.compute_masks(sparsity)
        modules = dict(self.layers)
        out = {}
        for name, mask in masks.items():
            apply_mask(modules[name], mask)
            out[name] = 1.0 - int(mask.sum()) / mask.numel()
        self.sparsity = sparsity
        return out

    def achieved(self) -> dict[str, Any]:
        """Pruned / total weights per layer and overall."""
        per = {}
        zeros = total = 0
        for name, module in self.layers:
            mask = get_mask(module)
            n = cast(torch.Tensor, module.weight).numel()
            z = 0 if mask is None else n - int(mask.sum())
            per[name] = {"params": n, "pruned": z, "sparsity": z / n if n else 0.0}
            zeros += z
            total += n
        return {"layers": per, "pruned": zeros, "params": total, "sparsity": zeros / total if total else 0.0}


# --------------------------------------------------------------------------------------------
# the technique


@dataclasses.dataclass(frozen=True, kw_only=True)
class MagnitudePruning(TechniqueConfig):
    """Unstructured magnitude pruning with masks that stay applied through fine-tuning.

    Formula: keep ``w`` iff its score ranks above the ``round(s * N)`` smallest (per layer or
    globally); N:M keeps the N largest of every M consecutive input weights. Schedules: one-shot;
    iterative ``s_k = 1 - (1 - s)^(k/steps)`` with fine-tuning after each round; AGP
    ``s_t = s_f + (s_i - s_f)(1 - (t - t0)/(nΔt))^3`` during training.
    Citations: Han et al. 2015/2016 (magnitude pruning, deep compression); Zhu & Gupta 2017 (AGP);
    Mishra et al. 2021 (2:4 sparsity).

    Attributes:
        sparsity: fraction of the selected weights set to zero, in [0, 1). Default 0.5, or
            ``1 - N/M`` with a pattern (a different value is an error).
        scope: ``global`` (one threshold over all selected layers) or ``layer`` (each layer alike).
        criterion: ``l1`` / ``l2`` magnitude or ``random``.
        pattern: ``"N:M"`` semi-structured sparsity (e.g. ``"2:4"``), or None.
        per_layer: ``{layer name or "re:regex": sparsity}`` overrides.
        schedule: ``one_shot``, ``iterative`` or ``agp``.
        steps: rounds of the iterative schedule.
        initial_sparsity, start_step, end_step, frequency: AGP's s_i, t0, t0 + nΔt (None: 75% of
            the training steps) and Δt (None: 20 pruning events).
        train: fine-tuning after one-shot pruning, after each iterative round, or the training run
            AGP prunes during (``epochs: 0``, the default: none; AGP needs training). Old flat keys
            ``finetune_epochs``, ``finetune_max_steps``, ``lr``, ``optimizer`` map into it.
        strict: raise instead of skipping layers that cannot be pruned.
    """

    name: ClassVar[str] = NAME
    summary: ClassVar[str] = "Unstructured magnitude pruning (masks), global/layer, N:M, one-shot/iterative/AGP."
    renamed: ClassVar[Mapping[str, str]] = RECOVERY_RENAMED

    sparsity: float | None = None
    scope: Scope = "global"
    criterion: Criterion = "l1"
    pattern: str | None = None
    per_layer: dict[str, float] = dataclasses.field(default_factory=dict)
    schedule: Literal["one_shot", "iterative", "agp"] = "one_shot"
    steps: int = 3
    initial_sparsity: float = 0.0
    start_step: int = 0
    end_step: int | None = None
    frequency: int | None = None
    train: TrainConfig = dataclasses.field(default_factory=no_recovery)
    strict: bool = False

    def validate(self) -> None:
        if self.sparsity is not None:
            self.check("sparsity", self.sparsity, low=0.0, high=1.0, high_inclusive=False)
        if self.pattern is not None:
            n, m = parse_pattern(self.pattern)
            implied = 1.0 - n / m
            if self.sparsity is not None and abs(self.sparsity - implied) > 1e-9:
                raise ConfigError(
                    f"MagnitudePruning.sparsity={self.sparsity} contradicts pattern={self.pattern!r} "
                    f"(which means sparsity {implied:g}); leave sparsity unset."
                )
            if self.per_layer:
                raise ConfigError("MagnitudePruning.per_layer cannot be combined with an N:M pattern.")
        for key, value in self.per_layer.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise ConfigError(f"MagnitudePruning.per_layer[{key!r}] must be a number, got {value!r}.")
            self.check(f"per_layer[{key!r}]", float(value), low=0.0, high=1.0, high_inclusive=False)
        self.check("steps", self.steps, low=1)
        self.check("initial_sparsity", self.initial_sparsity, low=0.0, high=self.target_sparsity)
        self.check("start_step", self.start_step, low=0)
        if self.end_step is not None:
            self.check("end_step", self.end_step, low=self.start_step, low_inclusive=False)
        if self.frequency is not None:
            self.check("frequency", self.frequency, low=1)
        if self.schedule == "agp" and self.train.epochs == 0:
            raise ConfigError("MagnitudePruning.schedule='agp' prunes during training: set train.epochs >= 1.")
        if self.schedule == "agp" and self.pattern is not None:
            raise ConfigError(
                "MagnitudePruning: an N:M pattern is applied at once; use schedule 'one_shot' or 'iterative'."
            )

    @property
    def target_sparsity(self) -> float:
        if self.sparsity is not None:
            return self.sparsity
        if self.pattern is not None:
            n, m = parse_pattern(self.pattern)
            return 1.0 - n / m
        return 0.5

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> TechniqueConfig:
        """As :meth:`TechniqueConfig.from_dict`; a partial ``train`` section keeps this step's defaults."""
        return super().from_dict(fill_train_defaults(data, default=no_recovery(), renamed=cls.renamed))


def magnitude_prune(
    model: nn.Module,
    *,
    sparsity: float = 0.5,
    scope: str = "global",
    criterion: str = "l1",
    pattern: str | None = None,
    targets: Targets | None = None,
    per_layer: dict[str, float] | None = None,
    seed: int = 0,
    strict: bool = False,
) -> StepOutcome:
    """One-shot magnitude pruning of `model` (in place, with masks); see :class:`MagnitudePruning`."""
    config = MagnitudePruning(
        sparsity=None if pattern is not None else sparsity,
        scope=cast(Scope, scope),  # checked by the config
        criterion=cast(Criterion, criterion),
        pattern=pattern,
        per_layer=per_layer or {},
        strict=strict,
    )
    return _run(model, config, targets=targets, context=Context(seed=seed))


def _layers_for(
    model: nn.Module, config: MagnitudePruning, targets: Targets | None
) -> tuple[MagnitudePruner, dict[str, str]]:
    pattern = parse_pattern(config.pattern) if config.pattern else None
    layers, skipped = select_layers(
        model,
        targets,
        reason_unsupported=lambda _n, m: unsupported_reason(m, pattern),
        technique="magnitude_pruning",
    )
    if skipped and config.strict:
        detail = "; ".join(f"{k}: {v}" for k, v in skipped.items())
        raise TargetError(f"magnitude_pruning (strict): cannot prune {detail}.")
    per_layer = match_per_layer(
        config.per_layer, [n for n, _ in layers], field="per_layer", technique="MagnitudePruning"
    )
    return MagnitudePruner(
        layers, scope=config.scope, criterion=config.criterion, pattern=pattern, per_layer=per_layer
    ), skipped


def _prune_rounds(
    pruner: MagnitudePruner, config: MagnitudePruning, model: nn.Module, context: Context
) -> list[dict[str, Any]]:
    """Prune along the schedule (fine-tuning after each round, or AGP during training); the rounds' records."""
    target = config.target_sparsity

    def tune(tag: str, hooks: tuple[AGPHook, ...] = ()) -> dict[str, Any]:
        own_run_dir = config.schedule == "iterative"
        return recover(model, config.train, context, technique=NAME, tag=tag, hooks=hooks, own_run_dir=own_run_dir)

    if config.schedule == "agp":
        # masks exist from the start so the optimizer and checkpoints see the final structure
        pruner.prune_to(config.initial_sparsity)
        hook = AGPHook(
            pruner,
            final=target,
            initial=config.initial_sparsity,
            start_step=config.start_step,
            end_step=config.end_step,
            frequency=config.frequency,
        )
        hook.current = config.initial_sparsity
        result = tune("agp", (hook,))
        return [{"schedule": "agp", "events": [list(h) for h in hook.history], "finetune": result}]
    rounds: list[dict[str, Any]] = []
    targets_seq = [target] if config.schedule == "one_shot" else iterative_sparsities(target, config.steps)
    for k, s in enumerate(targets_seq):
        pruner.prune_to(s)
        entry: dict[str, Any] = {"round": k + 1, "sparsity": s}
        if config.train.epochs > 0:
            entry["finetune"] = tune(f"round{k + 1}")
        rounds.append(entry)
    return rounds


def _run(model: nn.Module, config: MagnitudePruning, *, targets: Targets | None, context: Context) -> StepOutcome:
    pruner, skipped = _layers_for(model, config, targets)
    pruner.generator.manual_seed(int(context.seed))
    if config.train.epochs > 0:
        context.require_data("train", technique=NAME)
    rounds = _prune_rounds(pruner, config, model, context)
    achieved = pruner.achieved()
    layers = [
        {
            "layer": name,
            "type": type(module).__name__,
            **achieved["layers"][name],
            **({"pattern": config.pattern} if config.pattern else {}),
        }
        for name, module in pruner.layers
    ]
    info = {
        "target_sparsity": config.target_sparsity,
        "sparsity": achieved["sparsity"],
        "pruned_weights": achieved["pruned"],
        "prunable_weights": achieved["params"],
        "scope": config.scope,
        "criterion": config.criterion,
        "schedule": config.schedule,
        "rounds": rounds,
        "note": "unstructured masks: dense kernels still compute every MAC (sparse_kernel=False); "
        "the gain is in bytes on disk (sparse storage codecs)",
    }
    return StepOutcome(model=model, layers=layers, skipped=skipped, info=info)


@TECHNIQUES.handles(MagnitudePruning)
def magnitude_pruning(
    model: nn.Module, config: MagnitudePruning, *, targets: Targets | None, context: Context
) -> StepOutcome:
    """Handler of :class:`MagnitudePruning`: works on a copy, returns it masked (and fine-tuned).

    Bad input (targets matching nothing, no prunable layer, missing train data when fine-tuning)
    raises before anything changes; the caller's model is never modified.
    """
    return _run(copy.deepcopy(model), config, targets=targets, context=context)
