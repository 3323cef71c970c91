"""Student builders: shallower copies of the teacher (DistilBERT-style), narrower ones (structured
channel pruning of the teacher), built-in architectures, or any user-supplied module.

Depth reduction (:func:`shallow_copy`) works on *stages*: ``nn.ModuleList`` / ``nn.Sequential``
containers whose children are blocks of one class (a transformer's layer list, a ResNet stage; see
:func:`torchslim.distillation.taps.find_stages`). In each stage of ``n`` blocks it keeps
``max(1, n // k)`` blocks, initialised with the teacher's weights (Sanh et al. 2019, "DistilBERT":
"we initialize the student from the teacher by taking one layer out of two"). Blocks that change
the shape of what flows through the stage (a strided ResNet block, a channel change) are always
kept; the others are chosen by relative depth, ``round((j + 1) m / q) - 1`` for the ``j``-th of
``q`` picks among ``m`` removable blocks, i.e. every k-th block ending with the last one: a 6-layer
MiniLM keeps layers 1, 3 and 5 at ``k = 2``.

The cut is recorded as a ``drop_layers`` entry of the model's plan
(:func:`torchslim.core.plans.append_plan_entry`), whose replay is registered here with
:func:`torchslim.core.plans.register_plan_replay`, so a saved student reloads with its reduced depth.

Student specs (the ``student`` field of the ``distill`` technique and ``--student`` of the CLI):

==================================  ===========================================================
``depth:K``                         keep every K-th block of every stage (K >= 2)
``layers:N``                        keep N blocks of the one stage (a transformer's layers)
``width:R``                         remove the fraction R of channels / neurons / heads with
                                    structured channel pruning (needs ``torchslim.pruning``)
``NAME`` or ``{"name", "kwargs"}``  a built-in model (``torchslim.models``), freshly initialised
                                    (pretrained weights where they ship); ``num_classes``
                                    defaults to the teacher's
==================================  ===========================================================
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any, Literal, cast

import torch
from torch import Tensor, nn

from torchslim.core.batches import call_model, logits_of
from torchslim.core.errors import ConfigError, ModelError, TargetError, did_you_mean
from torchslim.core.plans import append_plan_entry, register_plan_replay
from torchslim.distillation.taps import find_module, find_stages
from torchslim.graph.surgery import set_module

DROP_LAYERS_KIND = "drop_layers"
"""Plan-entry kind recorded by :func:`shallow_copy` and replayed when an artifact is loaded."""

StudentKind = Literal["depth", "layers", "width", "model"]


@dataclasses.dataclass(frozen=True)
class StudentSpec:
    """A parsed student spec (see the module docstring for the text forms)."""

    kind: StudentKind
    value: Any

    def to_string(self) -> str:
        if self.kind == "model":
            return json.dumps(self.value, sort_keys=True)
        return f"{self.kind}:{self.value}"


def parse_student_spec(text: str) -> StudentSpec:
    """Parse a student spec string; a `ConfigError` says what is wrong and what is accepted."""
    if isinstance(text, StudentSpec):
        return text
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"A student spec must be a non-empty string, got {text!r}.")
    text = text.strip()
    forms = 'depth:K, layers:N, width:R, a built-in model name or a JSON {"name": ..., "kwargs": {...}}'
    if text.startswith("{"):
        try:
            spec = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"Student spec {text!r} is not valid JSON: {exc}.") from None
        return StudentSpec("model", _check_model_spec(spec, text))
    kind, sep, raw = text.partition(":")
    if sep and kind in ("depth", "layers", "width"):
        try:
            value: Any = float(raw) if kind == "width" else int(raw)
        except ValueError:
            raise ConfigError(f"Student spec {text!r}: {raw!r} is not a number; accepted forms: {forms}.") from None
        if kind == "depth" and value < 2:
            raise ConfigError(f"Student spec {text!r}: depth:K keeps every K-th block, K must be >= 2.")
        if kind == "layers" and value < 1:
            raise ConfigError(f"Student spec {text!r}: layers:N needs N >= 1.")
        if kind == "width" and not (0.0 < value < 1.0):
            raise ConfigError(f"Student spec {text!r}: width:R removes the fraction R of channels, R in (0, 1).")
        return StudentSpec(cast(StudentKind, kind), value)
    from torchslim.models import MODELS

    if text in MODELS:
        return StudentSpec("model", {"name": text, "kwargs": {}})
    raise ConfigError(
        f"Unknown student spec {text!r}; accepted forms: {forms}."
        + did_you_mean(text, ["depth:2", "layers:3", "width:0.5", *MODELS])
    )


def _check_model_spec(spec: Any, text: str) -> dict[str, Any]:
    from torchslim.models import MODELS

    if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str):
        raise ConfigError(f'Student spec {text!r} must be a JSON object with a string "name".')
    extra = sorted(set(spec) - {"name", "kwargs"})
    if extra:
        raise ConfigError(f"Student spec {text!r} has unknown key(s) {extra}; known: ['kwargs', 'name'].")
    if spec["name"] not in MODELS:
        raise ConfigError(
            f"Student spec {text!r}: unknown model {spec['name']!r}; built-in: {sorted(MODELS)}."
            + did_you_mean(spec["name"], list(MODELS))
        )
    kwargs = spec.get("kwargs") or {}
    if not isinstance(kwargs, Mapping):
        raise ConfigError(f'Student spec {text!r}: "kwargs" must be an object.')
    return {"name": spec["name"], "kwargs": dict(kwargs)}


# ------------------------------------------------------------------------------------------------
# depth


def _first_tensor(value: Any) -> Tensor | None:
    if isinstance(value, Tensor):
        return value
    if isinstance(value, Mapping):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        for item in value:
            found = _first_tensor(item)
            if found is not None:
                return found
    return None


def _block_shapes(
    model: nn.Module, stages: Sequence[tuple[str, nn.Module]], example_input: Any
) -> dict[tuple[str, int], bool]:
    """Run `model` once and return ``{(stage, index): True when the block keeps its input's shape}``."""
    preserved: dict[tuple[str, int], bool] = {}
    seen_in: dict[tuple[str, int], tuple[int, ...]] = {}
    handles = []

    def pre(key: tuple[str, int]) -> Any:
        def hook(module: nn.Module, args: Any, kwargs: Any) -> None:
            t = _first_tensor(args) if args else None
            if t is None:
                t = _first_tensor(kwargs)
            if t is not None:
                seen_in[key] = tuple(t.shape)

        return hook

    def post(key: tuple[str, int]) -> Any:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            t = _first_tensor(output)
            if t is not None and key in seen_in:
                preserved[key] = tuple(t.shape) == seen_in[key]

        return hook

    flags = [(m, m.training) for m in model.modules()]
    try:
        for name, stage in stages:
            for i, block in enumerate(stage.children()):
                handles.append(block.register_forward_pre_hook(pre((name, i)), with_kwargs=True))
                handles.append(block.register_forward_hook(post((name, i))))
        model.eval()
        with torch.no_grad():
            call_model(model, example_input)
    finally:
        for h in handles:
            h.remove()
        for m, flag in flags:
            m.training = flag
    return preserved


def _pick_by_depth(candidates: Sequence[int], count: int) -> list[int]:
    m = len(candidates)
    if count <= 0 or m == 0:
        return []
    if count >= m:
        return list(candidates)
    return sorted({candidates[int(math.floor((j + 1) * m / count + 0.5)) - 1] for j in range(count)})


def _example_for(teacher: nn.Module, example_input: Any) -> Any:
    if example_input is not None:
        return example_input
    from torchslim.models import example_input as builtin_example
    from torchslim.models import get_model_spec

    if get_model_spec(teacher) is not None:
        return builtin_example(teacher, batch_size=2)
    return None


Stage = nn.Sequential | nn.ModuleList
Stages = list[tuple[str, Stage]]


def _stages(teacher: nn.Module, stages: Sequence[str] | None) -> Stages:
    """The named stages to shorten: those given, or every stage :func:`find_stages` finds."""
    if stages is None:
        found = find_stages(teacher)
        if not found:
            raise ModelError(
                f"{type(teacher).__name__} has no stage of repeated blocks (an nn.ModuleList / nn.Sequential "
                "of one block type) to shorten; give stages=[...] or use a width or model student."
            )
        return [(name, module) for name, module in found if isinstance(module, (nn.Sequential, nn.ModuleList))]
    named: Stages = []
    for name in stages:
        module = find_module(teacher, name, role="teacher") if name else teacher
        if not isinstance(module, (nn.Sequential, nn.ModuleList)):
            raise ModelError(f"Stage {name!r} is a {type(module).__name__}, not an nn.Sequential / nn.ModuleList.")
        named.append((name, module))
    return named


def _explicit_plan(
    teacher: nn.Module, found: Stages, keep: Sequence[int] | Mapping[str, Sequence[int]]
) -> dict[str, list[int]]:
    """The plan of ``keep=...``: a list for a model's one stage, or ``{stage: [indices]}``; checked."""
    sizes = {name: len(module) for name, module in found}
    if not isinstance(keep, Mapping):
        if len(found) != 1:
            raise ConfigError(
                f"keep=[...] names blocks of one stage, but {type(teacher).__name__} has {len(found)} stages "
                f"({list(sizes)}); pass keep={{stage: [indices]}}."
            )
        keep = {found[0][0]: list(keep)}
    plan: dict[str, list[int]] = {}
    for name, indices in keep.items():
        if name not in sizes:
            raise TargetError(
                f"keep: {name!r} is not a stage; stages: {list(sizes)}." + did_you_mean(name, list(sizes))
            )
        idx = sorted({int(i) for i in indices})
        if not idx or idx[0] < 0 or idx[-1] >= sizes[name]:
            raise ConfigError(f"keep[{name!r}]={list(indices)} must be non-empty indices in [0, {sizes[name] - 1}].")
        plan[name] = idx
    return plan


def _check_counts(teacher: nn.Module, found: Stages, keep_every: int | None, num_layers: int | None) -> None:
    if num_layers is not None:
        if len(found) != 1:
            raise ConfigError(
                f"num_layers applies to a model with one stage of blocks (a transformer); {type(teacher).__name__} "
                f"has {len(found)} ({[name for name, _ in found]}); use keep_every."
            )
        if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 1:
            raise ConfigError(f"num_layers={num_layers!r} must be an integer >= 1.")
    elif isinstance(keep_every, bool) or not isinstance(keep_every, int) or keep_every < 2:
        raise ConfigError(f"keep_every={keep_every!r} must be an integer >= 2.")


def _shape_preserving(teacher: nn.Module, found: Stages, example_input: Any) -> dict[tuple[str, int], bool]:
    """Which blocks keep their input's shape (``nn.Sequential`` stages need an example input to tell)."""
    needs_probe = any(isinstance(module, nn.Sequential) for _, module in found)
    example = _example_for(teacher, example_input) if needs_probe else example_input
    if needs_probe and example is None:
        raise ModelError(
            f"Shortening the stages of {type(teacher).__name__} needs an example input to find the blocks that "
            "change the shape (those are always kept); pass example_input=..."
        )
    return _block_shapes(teacher, found, example) if example is not None else {}


def _stage_plan(name: str, module: Stage, quota: int, preserved: dict[tuple[str, int], bool]) -> list[int]:
    """Blocks of one stage to keep: every shape-changing block, then `quota` in all by relative depth."""
    n = len(module)
    if isinstance(module, nn.Sequential):
        missing = [i for i in range(n) if (name, i) not in preserved]
        if missing:
            raise ModelError(f"Blocks {missing} of stage {name!r} did not run on the example input.")
        forced = [i for i in range(n) if not preserved[(name, i)]]
    else:
        forced = [i for i in range(n) if preserved.get((name, i)) is False]
    removable = [i for i in range(n) if i not in forced]
    return sorted(set(forced) | set(_pick_by_depth(removable, quota - len(forced))))


def plan_depth(
    teacher: nn.Module,
    *,
    keep_every: int | None = 2,
    num_layers: int | None = None,
    keep: Sequence[int] | Mapping[str, Sequence[int]] | None = None,
    stages: Sequence[str] | None = None,
    example_input: Any = None,
) -> dict[str, list[int]]:
    """Which blocks of which stage a depth-reduced student keeps: ``{stage name: [indices]}``.

    See :func:`shallow_copy` for the arguments.
    """
    found = _stages(teacher, stages)
    if keep is not None:
        return _explicit_plan(teacher, found, keep)
    _check_counts(teacher, found, keep_every, num_layers)
    preserved = _shape_preserving(teacher, found, example_input)
    plan = {}
    for name, module in found:
        n = len(module)
        quota = min(num_layers, n) if num_layers is not None else max(1, n // int(keep_every or 2))
        plan[name] = _stage_plan(name, module, quota, preserved)
    return plan


def apply_depth_plan(model: nn.Module, plan: Mapping[str, Sequence[int]]) -> nn.Module:
    """Keep only the listed blocks of each stage of `model` (in place; renumbered 0..), update Hugging
    Face configs (``num_hidden_layers``, ``layer_types``) and layer indices; return the model."""
    for name, indices in plan.items():
        if not name:
            raise ModelError("The model itself cannot be a stage to shorten; wrap it in a module.")
        stage = find_module(model, name, role="model")
        if not isinstance(stage, (nn.Sequential, nn.ModuleList)):
            raise ModelError(f"Stage {name!r} is a {type(stage).__name__}, not an nn.Sequential / nn.ModuleList.")
        old = len(stage)
        idx = [int(i) for i in indices]
        if not idx or min(idx) < 0 or max(idx) >= old:
            raise ModelError(f"Stage {name!r} has {old} blocks; cannot keep {idx}.")
        blocks = list(stage.children())
        kept = [blocks[i] for i in idx]
        if isinstance(stage, nn.Sequential):
            new: nn.Module = nn.Sequential(OrderedDict((str(j), b) for j, b in enumerate(kept)))
        else:
            new = nn.ModuleList(kept)
        set_module(model, name, new)
        if isinstance(stage, nn.ModuleList):
            for j, block in enumerate(kept):
                for sub in block.modules():
                    if isinstance(getattr(sub, "layer_idx", None), int):
                        setattr(sub, "layer_idx", j)  # noqa: B010  # not a declared attribute of Module
            seen: set[int] = set()
            for module in model.modules():
                config = getattr(module, "config", None)
                if config is None or id(config) in seen or getattr(config, "num_hidden_layers", None) != old:
                    continue
                seen.add(id(config))
                config.num_hidden_layers = len(kept)
                layer_types = getattr(config, "layer_types", None)
                if isinstance(layer_types, list) and len(layer_types) == old:
                    config.layer_types = [layer_types[i] for i in idx]
    return model


def _output_shape(model: nn.Module, example_input: Any) -> tuple[int, ...]:
    flags = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        with torch.no_grad():
            return tuple(logits_of(call_model(model, example_input)).shape)
    finally:
        for m, flag in flags:
            m.training = flag


def shallow_copy(
    teacher: nn.Module,
    *,
    keep_every: int | None = 2,
    num_layers: int | None = None,
    keep: Sequence[int] | Mapping[str, Sequence[int]] | None = None,
    stages: Sequence[str] | None = None,
    example_input: Any = None,
) -> nn.Module:
    """A depth-reduced copy of `teacher` whose kept blocks carry the teacher's weights (DistilBERT).

    Args:
        teacher: left unchanged.
        keep_every: keep ``max(1, n // k)`` of the ``n`` blocks of each stage (every k-th, ending
            with the last; shape-changing blocks always stay).
        num_layers: instead, keep this many blocks of the model's one stage (e.g. 3 of 6 layers).
        keep: instead, the exact block indices: a list (one stage) or ``{stage: [indices]}``.
        stages: the stage names (default: every stage found, see the module docstring).
        example_input: one input batch, needed for ``nn.Sequential`` stages to find shape-changing
            blocks (built-in models supply their own).

    The copy has a ``drop_layers`` entry appended to its plan (:func:`torchslim.core.plans.model_plan`).
    Raises `ModelError` when
    there is nothing to shorten or the result would change the output shape.
    """
    plan = plan_depth(
        teacher, keep_every=keep_every, num_layers=num_layers, keep=keep, stages=stages, example_input=example_input
    )
    student = apply_depth_plan(copy.deepcopy(teacher), plan)
    example = example_input if example_input is not None else _example_for(teacher, None)
    if example is not None:
        before, after = _output_shape(teacher, example), _output_shape(student, example)
        if before != after:
            raise ModelError(
                f"Keeping blocks {plan} of {type(teacher).__name__} changes its output from {before} to {after}; "
                "choose blocks to keep with keep=..."
            )
    append_plan_entry(
        student, {"kind": DROP_LAYERS_KIND, "version": 1, "stages": {k: list(v) for k, v in plan.items()}}
    )
    return student


@register_plan_replay(DROP_LAYERS_KIND)
def replay_drop_layers(model: nn.Module, entry: dict[str, Any]) -> nn.Module:
    """Plan replay of kind ``drop_layers``: keep the recorded blocks of each stage."""
    stages = entry.get("stages")
    if not isinstance(stages, Mapping):
        raise ModelError(f"A {DROP_LAYERS_KIND} plan entry needs a 'stages' mapping, got {stages!r:.80}.")
    return apply_depth_plan(model, stages)


# ------------------------------------------------------------------------------------------------
# width, built-in models, dispatch


def narrow_copy(teacher: nn.Module, *, ratio: float, example_input: Any = None, **prune_options: Any) -> nn.Module:
    """A width-reduced copy of `teacher`: structured channel pruning removes the fraction `ratio` of
    channels / neurons (``torchslim.pruning.prune_channels``, keyword options passed through), keeping
    the teacher's surviving weights. Raises `ModelError` when the pruning package is not available."""
    try:
        from torchslim.pruning import prune_channels
    except ImportError as exc:
        raise ModelError(
            f"A width student (width:{ratio}) needs torchslim.pruning (structured channel pruning), which cannot "
            f"be imported here ({exc}); use a depth or model student."
        ) from None
    example = _example_for(teacher, example_input)
    if example is None:
        raise ModelError("A width student needs an example input to trace the teacher; pass example_input=...")
    return prune_channels(teacher, example, ratio=ratio, **prune_options).model


def pruning_available() -> bool:
    """Whether width students (structured channel pruning) can be built here."""
    try:
        from torchslim.pruning import prune_channels  # noqa: F401
    except ImportError:
        return False
    return True


def _model_student(teacher: nn.Module, spec: Mapping[str, Any]) -> nn.Module:
    from torchslim.models import build_from_spec, get_model_spec, model_info

    kwargs = dict(spec.get("kwargs") or {})
    teacher_spec = get_model_spec(teacher) or {}
    if "num_classes" not in kwargs:
        teacher_classes = (teacher_spec.get("kwargs") or {}).get("num_classes")
        if teacher_classes is not None or model_info(spec["name"]).num_classes is None:
            kwargs["num_classes"] = (
                teacher_classes if teacher_classes is not None else getattr(teacher, "num_classes", None)
            )
    return build_from_spec({"name": spec["name"], "kwargs": kwargs}, pretrained=True)


def build_student(teacher: nn.Module, spec: str | StudentSpec | nn.Module, *, example_input: Any = None) -> nn.Module:
    """The student a spec describes (see the module docstring); a module is returned as it is.

    The teacher is never modified; depth and width students start from copies of its weights.
    """
    if isinstance(spec, nn.Module):
        if spec is teacher:
            raise ModelError("The student is the teacher itself; distil into a copy (copy.deepcopy(teacher)).")
        return spec
    parsed = parse_student_spec(spec) if not isinstance(spec, StudentSpec) else spec
    if parsed.kind == "depth":
        student = shallow_copy(teacher, keep_every=int(parsed.value), example_input=example_input)
    elif parsed.kind == "layers":
        student = shallow_copy(teacher, keep_every=None, num_layers=int(parsed.value), example_input=example_input)
    elif parsed.kind == "width":
        student = narrow_copy(teacher, ratio=float(parsed.value), example_input=example_input)
    else:
        student = _model_student(teacher, parsed.value)
    return student
