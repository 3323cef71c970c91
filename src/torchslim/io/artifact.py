"""torchslim artifacts: a directory of safetensors + JSON, written atomically, never a pickle.

Layout::

    DIR/
      model.safetensors    the weights (state_dict; packed formats add their own tensors)
      torchslim.json       format version, architecture spec, replayable plan, config, tensor index
      report.json          the compression report, when there is one

`load(DIR)` rebuilds the architecture from the spec (a built-in model name and its keyword
arguments), replays the plan (structural changes such as removed channels, recorded by the
techniques that made them; :mod:`torchslim.core.plans`), then loads the weights strictly. A user's
own architecture is passed as ``load(DIR, model=my_module)``.

Compressed layers are stored and restored only through the layer contract
(:class:`torchslim.core.layer.CompressedLayer`): ``stored_state(prefix)`` gives their tensors as
stored (packed codes, scales, codebooks) and a JSON codec, ``load_stored_state`` is its inverse.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from torchslim.core.errors import (
    ArtifactError,
    ManifestError,
    ModelError,
    OutputError,
    TorchSlimError,
    UnknownNameError,
)
from torchslim.core.layer import CompressedLayer, compressed_layers
from torchslim.core.plans import model_plan, replay_plan
from torchslim.io.atomic import default_mode, write_json, write_safetensors
from torchslim.io.manifest import (
    MAX_MANIFEST_BYTES,
    MAX_REPORT_BYTES,
    check_codec,
    check_manifest_fields,
    check_plan_bounds,
    check_report,
    index_bound,
    read_json_file,
)
from torchslim.io.outputs import check_output_dir, clean_leftovers
from torchslim.io.weights import check_finite, load_safetensors, report_casts

FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
MANIFEST_FILE = "torchslim.json"
REPORT_FILE = "report.json"


def baked_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict with masks applied for good, without touching `model`.

    Parametrized tensors (``torch.nn.utils.parametrize``, used by torchslim's pruning masks) and
    ``torch.nn.utils.prune`` reparametrizations are replaced by the effective tensor under its plain
    name (``weight`` instead of ``parametrizations.weight.original`` or ``weight_orig`` +
    ``weight_mask``), so stored zeros are real zeros and the sparse codecs can skip them, and the
    artifact loads into a plain architecture.
    """
    from torch.nn.utils import parametrize, prune

    state: dict[str, torch.Tensor] = {}
    for module_name, module in model.named_modules():
        prefix = f"{module_name}." if module_name else ""
        skip: set[str] = set()
        plain: dict[str, torch.Tensor] = {}
        for hook in module._forward_pre_hooks.values():
            if isinstance(hook, prune.BasePruningMethod):
                name = hook._tensor_name
                skip |= {f"{name}_orig", f"{name}_mask"}
                plain[name] = getattr(module, name).detach()
        if parametrize.is_parametrized(module):
            for name in module.parametrizations.keys():
                plain[name] = getattr(module, name).detach()
        for name, param in module._parameters.items():
            if param is not None and name not in skip:
                state[prefix + name] = param.detach()
        for name, buf in module._buffers.items():
            if buf is not None and name not in skip and name not in module._non_persistent_buffers_set:
                state[prefix + name] = buf.detach()
        for name, tensor in plain.items():
            state[prefix + name] = tensor
    # parametrization containers hold `original` tensors and the parametrizations' own buffers
    return {k: v for k, v in state.items() if ".parametrizations." not in f".{k}"}


def export_state(model: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any]]:
    """Tensors to store, per-module packing metadata, and per-tensor codec metadata.

    Compressed layers store their own form through ``stored_state(prefix) -> (tensors, meta)``
    (sub-byte weights, codebooks); everything else comes from ``state_dict()`` of the baked
    model and goes through the smallest of the dense / bitmask / index codecs.
    """
    from torchslim.io.codecs import encode

    tensors: dict[str, torch.Tensor] = {}
    codecs: dict[str, Any] = {}
    meta: dict[str, Any] = {}
    handled: set[str] = set()
    for name, layer in compressed_layers(model):
        prefix = f"{name}." if name else ""
        mod_tensors, mod_meta = layer.stored_state(prefix)
        tensors.update(mod_tensors)
        if mod_meta:
            meta[name] = mod_meta
        handled.add(name)
    for key, value in baked_state_dict(model).items():
        if any(key.startswith(h + ".") for h in handled if h) or ("" in handled):
            continue
        stored, codec = encode(key, value)
        tensors.update(stored)
        if codec is not None:
            codecs[key] = codec
    return tensors, meta, codecs


def _write_staged(
    directory: Path,
    tensors: dict[str, torch.Tensor],
    manifest: dict[str, Any],
    report: dict[str, Any] | None,
    extra_files: dict[str, str | bytes],
) -> None:
    """Write every file into a staging directory next to `directory`, then swap it into place.

    Leftovers of killed saves of the same target are cleaned first (a swap cut between its renames
    is restored). The swap renames the old artifact aside, the new one in, then deletes the old one,
    so `directory` is missing only between two renames, and the next save restores it from there.
    """
    directory.parent.mkdir(parents=True, exist_ok=True)
    clean_leftovers(directory)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.stage-{os.getpid()}-", dir=directory.parent))
    os.chmod(staging, default_mode(directory=True))  # mkdtemp makes 0700; an artifact folder gets the usual mode
    backup: Path | None = None
    try:
        write_safetensors(staging / WEIGHTS_FILE, tensors, metadata={"format": "pt"})
        write_json(staging / MANIFEST_FILE, manifest, compact=True)  # counts toward the artifact's bytes
        if report is not None:
            write_json(staging / REPORT_FILE, report)
        for name, content in extra_files.items():
            if "/" in name or name.startswith(".") or name in (WEIGHTS_FILE, MANIFEST_FILE, REPORT_FILE):
                raise ArtifactError(f"extra file name {name!r} is not allowed in an artifact.")
            data = content.encode("utf-8") if isinstance(content, str) else content
            (staging / name).write_bytes(data)
        if directory.exists():
            backup = directory.with_name(f".{directory.name}.old-{os.getpid()}")
            shutil.rmtree(backup, ignore_errors=True)
            os.replace(directory, backup)
        os.replace(staging, directory)
        if backup is not None:
            shutil.rmtree(backup, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if backup is not None and backup.exists() and not directory.exists():
            os.replace(backup, directory)  # failed between the two renames: the old artifact goes back
        raise


def save(
    model: nn.Module,
    directory: str | Path,
    *,
    spec: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
    report: dict[str, Any] | None = None,
    extra_files: dict[str, str | bytes] | None = None,
    overwrite: bool = True,
) -> Path:
    """Write `model` as an artifact directory, atomically (a new directory is renamed into place).

    `spec` defaults to the spec recorded on built-in models (``torchslim_spec``). `extra_files`
    (name -> text or bytes, e.g. ``report.html``) are written into the same staging directory, so
    the artifact appears complete or not at all. Returns the path.
    """
    from torchslim.models import get_model_spec

    directory = check_output_dir(directory, param="save(directory=...)", overwrite=overwrite)
    spec = spec if spec is not None else get_model_spec(model)
    tensors, tensor_meta, codecs = export_state(model)
    manifest = {
        "format": "torchslim-artifact",
        "format_version": FORMAT_VERSION,
        "spec": spec,
        "plan": model_plan(model),
        "config": config or {},
        "tensors": tensor_meta,
        "codecs": codecs,
        "torch_version": torch.__version__,
    }
    try:
        _write_staged(directory, tensors, manifest, report, extra_files or {})
    except OSError as exc:
        where = exc.filename or directory
        raise OutputError(f"Cannot write artifact {str(directory)!r}: {str(where)!r}: {exc.strerror or exc}") from exc
    return directory


def saved_bytes(model: nn.Module, *, config: dict[str, Any] | None = None) -> int:
    """Bytes on disk of the files (weights and manifest) :func:`save` writes for `model` with `config`
    in its manifest: the size a user gets, counted from real files, never from parameter counts."""
    with tempfile.TemporaryDirectory(prefix="torchslim-size-") as tmp, torch.no_grad():
        folder = save(model, Path(tmp) / "artifact", config=config)
        return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def read_manifest(directory: str | Path) -> dict[str, Any]:
    """The manifest of the artifact `directory`, parsed and checked against its schema (:mod:`.manifest`)."""
    directory = Path(directory)
    path = directory / MANIFEST_FILE
    if not directory.is_dir():
        raise ArtifactError(f"Artifact directory {str(directory)!r} does not exist.")
    if not path.is_file():
        raise ArtifactError(f"{str(directory)!r} is not a torchslim artifact: {MANIFEST_FILE} is missing.")
    manifest = read_json_file(path, limit=MAX_MANIFEST_BYTES, what="Manifest")
    if not isinstance(manifest, dict) or manifest.get("format") != "torchslim-artifact":
        raise ManifestError(f"{str(path)!r} is not a torchslim manifest.")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ManifestError(
            f"{str(path)!r} has format_version {str(manifest.get('format_version'))[:40]!r}; "
            f"this torchslim reads {FORMAT_VERSION}."
        )
    return check_manifest_fields(manifest, str(path))


def _decode_all(
    model: nn.Module, remaining: dict[str, torch.Tensor], codecs: dict[str, Any], *, source: str
) -> dict[str, torch.Tensor]:
    """Check every codec entry against the stored parts and the model's tensors, then decode it."""
    from torchslim.io.codecs import decode

    expected = model.state_dict()
    for key, codec in codecs.items():
        parts = {k: remaining.pop(k) for k in list(remaining) if k.startswith(key + "::")}
        check_codec(key, codec, parts, expected.get(key), source=source)
        try:
            remaining[key] = decode(key, parts, codec)
        except (KeyError, ValueError, RuntimeError, IndexError, TypeError) as exc:
            raise ManifestError(f"{source}: tensor {key!r} cannot be decoded: {exc}") from exc
    return remaining


def import_state(
    model: nn.Module,
    tensors: dict[str, torch.Tensor],
    tensor_meta: dict[str, Any],
    *,
    source: str,
    codecs: dict[str, Any] | None = None,
) -> None:
    """Load stored tensors into `model` strictly; packed modules unpack their own entries."""
    remaining = _decode_all(model, dict(tensors), codecs or {}, source=source)
    for name, meta in tensor_meta.items():
        try:
            module = model.get_submodule(name) if name else model
        except AttributeError as exc:
            raise ManifestError(f"{source}: tensors[{name[:80]!r}] names no layer of the model.") from exc
        if not isinstance(module, CompressedLayer):
            raise ArtifactError(f"{source}: layer {name!r} was stored packed but cannot unpack it.")
        prefix = f"{name}." if name else ""
        try:
            module.load_stored_state(prefix, remaining, meta)
        except TorchSlimError:
            raise
        except (KeyError, ValueError, RuntimeError, IndexError, TypeError, AttributeError) as exc:
            raise ManifestError(f"{source}: layer {name!r} cannot load its stored tensors: {exc}") from exc
        for key in [k for k in remaining if k.startswith(prefix)]:
            remaining.pop(key)
    report_casts(model, remaining, source=source)
    try:
        model.load_state_dict(remaining, strict=not tensor_meta)
    except RuntimeError as exc:
        raise ArtifactError(f"{source}: weights do not fit the architecture: {exc}") from exc


def _replay(model: nn.Module, plan: list[dict[str, Any]], *, source: str) -> nn.Module:
    check_plan_bounds(plan, bound=index_bound(model), source=source)
    try:
        return replay_plan(model, plan, source=source)
    except TorchSlimError:
        raise
    except (KeyError, ValueError, RuntimeError, IndexError, TypeError, AttributeError) as exc:
        raise ManifestError(f"{source}: the plan cannot be replayed: {type(exc).__name__}: {exc}") from exc


def load(directory: str | Path, *, model: nn.Module | None = None, allow_nonfinite: bool = False) -> nn.Module:
    """Rebuild the model saved in `directory` (architecture from its spec, or `model`) in eval mode.

    The manifest is checked against its schema before anything is built (:mod:`torchslim.io.manifest`);
    weights holding NaN or Inf raise :class:`NonFiniteWeightsError` unless `allow_nonfinite`.
    """
    from torchslim.models import build_from_spec, set_model_spec

    directory = Path(directory)
    manifest = read_manifest(directory)
    spec = manifest.get("spec")
    if model is None:
        if not spec:
            raise ArtifactError(
                f"Artifact {str(directory)!r} holds a user-defined architecture; pass it as load(dir, model=...)."
            )
        try:
            model = build_from_spec(spec, pretrained=False)
        except (UnknownNameError, ModelError) as exc:
            raise ManifestError(f"Artifact {str(directory)!r}: {exc}") from exc
    elif spec:
        set_model_spec(model, spec)
    model = _replay(model, manifest.get("plan") or [], source=str(directory))
    tensors = load_safetensors(directory / WEIGHTS_FILE)
    import_state(model, tensors, manifest.get("tensors") or {}, source=str(directory), codecs=manifest.get("codecs"))
    check_finite(model.state_dict(), source=str(directory), allow=allow_nonfinite)
    model.eval()
    return model


def read_report(directory: str | Path) -> dict[str, Any] | None:
    """The report.json of `directory` (None when there is none); typed errors for a malformed one."""
    path = Path(directory) / REPORT_FILE
    if not path.is_file():
        return None
    data = read_json_file(path, limit=MAX_REPORT_BYTES, what="Report", error=ArtifactError)
    return check_report(data, str(path))
