"""Typed errors. Every error names the parameter, layer, file or technique at fault."""

from __future__ import annotations


class TorchSlimError(Exception):
    """Base class of every error torchslim raises on purpose."""


class ConfigError(TorchSlimError, ValueError):
    """A configuration value, key or recipe is invalid."""


class UnknownNameError(ConfigError):
    """A technique, model, dataset or key name is not known; the message suggests close matches."""


class TargetError(TorchSlimError, ValueError):
    """A `Targets` pattern matched no module, or a module cannot be handled."""


class DataError(TorchSlimError):
    """Data is missing, malformed (NaN, wrong shape) or empty."""


class DataNotFoundError(DataError, FileNotFoundError):
    """A dataset file is missing; the message says how to get it."""


class ModelError(TorchSlimError, ValueError):
    """A model cannot be built, traced or transformed."""


class ArtifactError(TorchSlimError):
    """An artifact directory or weights file is missing, corrupt or inconsistent."""


class UnsafeInputError(ArtifactError):
    """A file would need unpickling of arbitrary objects; torchslim refuses it."""


class ManifestError(ArtifactError):
    """An artifact manifest (torchslim.json) fails its schema: a wrong type, an unknown dtype, a shape or
    index range that does not fit the stored tensors."""


class NonFiniteWeightsError(ArtifactError):
    """Loaded weights hold NaN or Inf (pass ``allow_nonfinite=True`` / ``--allow-nonfinite`` to accept them)."""


class InputTooLargeError(TorchSlimError, ValueError):
    """An input (file, manifest entry, YAML alias expansion) exceeds a declared size bound."""


class OutputError(ArtifactError):
    """An output path cannot be written (read-only folder, parent is a file, a folder where a file goes)."""


class UsageError(ConfigError):
    """A command-line usage error: a bad option value, a missing or unknown option or command."""


def did_you_mean(name: str, choices: list[str] | tuple[str, ...] | set[str]) -> str:
    """Return a ' did you mean ...?' suffix for an unknown `name`, or '' when nothing is close."""
    import difflib

    close = difflib.get_close_matches(str(name), sorted(map(str, choices)), n=3, cutoff=0.5)
    if not close:
        return ""
    return " Did you mean " + " or ".join(repr(c) for c in close) + "?"
