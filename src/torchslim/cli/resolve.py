"""Turn CLI words into objects: a model argument, a dataset name, sample caps."""

from __future__ import annotations

import contextvars
from pathlib import Path
from typing import Any

from torch import nn

from torchslim.core.errors import ArtifactError, UnknownNameError, did_you_mean

#: Set by the command line's ``--allow-nonfinite``: load weights holding NaN or Inf anyway.
ALLOW_NONFINITE: contextvars.ContextVar[bool] = contextvars.ContextVar("allow_nonfinite", default=False)


def resolve_model(
    name_or_path: str, *, weights: str | None = None, num_classes: int | None = None, seed: int = 0
) -> nn.Module:
    """A built-in model name (optionally with a `.safetensors` / state-dict weights file) or an artifact dir.

    A built-in model that starts from random weights is initialised from `seed` (the global RNG is
    untouched), so the same command builds the same model and a killed run's checkpoints match.
    """
    from torchslim.io import load, load_weights
    from torchslim.io.weights import report_casts
    from torchslim.models import MODELS, build_model

    path = Path(name_or_path)
    if path.is_dir():
        if weights:
            raise ArtifactError("--weights cannot be combined with an artifact directory (it holds its weights).")
        return load(path, allow_nonfinite=ALLOW_NONFINITE.get())
    if name_or_path not in MODELS:
        hint = did_you_mean(name_or_path, list(MODELS))
        raise UnknownNameError(
            f"Unknown model {name_or_path!r}: not a built-in model name and not an artifact directory; "
            f"built-in: {sorted(MODELS)}.{hint}"
        )
    kwargs: dict[str, Any] = {}
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    model = build_model(name_or_path, pretrained=weights is None, seed=seed, **kwargs)
    if weights:
        state = load_weights(weights, allow_nonfinite=ALLOW_NONFINITE.get())
        report_casts(model, state, source=str(weights))
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ArtifactError(f"Weights {weights!r} do not fit model {name_or_path!r}: {exc}") from exc
    model.eval()
    return model


def resolve_data(
    name: str | None,
    *,
    batch_size: int,
    train_samples: int | None,
    eval_samples: int | None,
    seed: int,
    root: str | None = None,
    model: nn.Module | None = None,
    preprocess: str | None = None,
    needs_train: bool = False,
) -> Any:
    """The splits of a built-in dataset or of the user's data at a path (`preprocess` in the
    ``--preprocess`` form). Unlabelled data feeds a recipe that trains (`needs_train`) through a
    train split (40%, pseudo-labelled by the original model in `compress`), calibration (20%) and
    held-out test data (40%); otherwise it only calibrates and is compared (50/50)."""
    from torchslim.data import ImagePreprocess, load_splits

    if name is None:
        return None
    options: dict[str, Any] = {
        "root": root,
        "batch_size": batch_size,
        "train_samples": train_samples,
        "eval_samples": eval_samples,
        "seed": seed,
    }
    if Path(name).exists():
        preprocessing = ImagePreprocess.parse(preprocess) if preprocess else None
        options.update(model=model, preprocess=preprocessing, trains=needs_train)
    elif preprocess:
        from torchslim.core.errors import ConfigError

        raise ConfigError(f"--preprocess applies to data read from a path, not to the built-in dataset {name!r}.")
    return load_splits(name, **options)
