"""The declared schema of ``torchslim.json`` and ``report.json``, with bounds, checked before any allocation.

An artifact's manifest comes from a file, so nothing in it is trusted: every field is checked for
its type, its size and, where it describes tensors, against the tensors actually stored and the
model it is loaded into, before a tensor is allocated or a structural change is replayed.

========== =====================================================================================
field      schema
========== =====================================================================================
format     ``"torchslim-artifact"``
version    ``format_version`` == 1
spec       null or ``{"name": str, "kwargs": {str: JSON}}``; ``num_classes`` an int in
           [1, MAX_CLASSES], other integers in [0, MAX_WIDTH], lists of at most MAX_LIST items
plan       a list (at most MAX_PLAN entries) of mappings with a string ``kind``; every integer
           below MAX_INDEX; every channel-index field (``idxs``: a list or ``"a-b,c"`` ranges)
           inside [0, index bound) where the bound is the largest dimension of the model's tensors
config     a mapping
tensors    a mapping from a module name of the model to a mapping (packed-layer metadata)
codecs     a mapping from a tensor name to ``{"codec": "bitmask"|"index", "shape": [int],
           "dtype": one of DTYPES}``; the shape equals the model's tensor and at most MAX_NUMEL
           elements; the stored parts have the sizes the shape implies
========== =====================================================================================

The whole manifest is at most MAX_MANIFEST_BYTES, nested at most MAX_DEPTH deep.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from torchslim.core.errors import ArtifactError, InputTooLargeError, ManifestError

MAX_MANIFEST_BYTES = 64 * 2**20
MAX_REPORT_BYTES = 64 * 2**20
MAX_DEPTH = 64
MAX_PLAN = 10_000
MAX_LIST = 64
MAX_CLASSES = 100_000
MAX_WIDTH = 16_384
MAX_INDEX = 2**31 - 1
MAX_NUMEL = 2**28  # 1 GiB of float32: far above any built-in model's largest tensor
DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float64": torch.float64,
    "int8": torch.int8,
    "uint8": torch.uint8,
    "int16": torch.int16,
    "int32": torch.int32,
    "int64": torch.int64,
    "bool": torch.bool,
}
CODECS = ("bitmask", "index")


def read_json_file(path: Path, *, limit: int, what: str, error: type[ArtifactError] = ManifestError) -> Any:
    """Parse the JSON file `path` (at most `limit` bytes, UTF-8); typed errors name the file."""
    try:
        size = path.stat().st_size
        if size > limit:
            raise InputTooLargeError(f"{what} {str(path)!r} is {size:,} bytes; the limit is {limit:,}.")
        raw = path.read_bytes()
    except OSError as exc:
        raise error(f"{what} {str(path)!r} cannot be read: {exc.strerror or exc}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{what} {str(path)!r} is not UTF-8 text (byte {exc.start}).") from exc
    try:
        data = json.loads(text, parse_constant=_no_constant)
    except (json.JSONDecodeError, ValueError, RecursionError) as exc:
        raise error(f"{what} {str(path)!r} is corrupt (not valid JSON): {str(exc)[:200]}") from exc
    _check_depth(data, str(path), error)
    return data


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _check_depth(data: Any, where: str, error: type[ArtifactError]) -> None:
    stack: list[tuple[Any, int]] = [(data, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise error(f"{where}: nested deeper than {MAX_DEPTH} levels.")
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_manifest_fields(manifest: Any, source: str) -> dict[str, Any]:
    """The top-level schema: types of every field (bounds of spec and plan are checked here too)."""
    if not isinstance(manifest, dict):
        raise ManifestError(f"{source}: the manifest must be a JSON object, got {_type_name(manifest)}.")
    expected: dict[str, tuple[type, ...]] = {
        "spec": (dict, type(None)),
        "plan": (list, type(None)),
        "config": (dict, type(None)),
        "tensors": (dict, type(None)),
        "codecs": (dict, type(None)),
    }
    for key, types in expected.items():
        if not isinstance(manifest.get(key), types):
            names = " or ".join("null" if t is type(None) else ("object" if t is dict else "list") for t in types)
            raise ManifestError(f"{source}: '{key}' must be {names}, got {_type_name(manifest.get(key))}.")
    check_spec(manifest.get("spec"), source)
    plan = manifest.get("plan") or []
    if len(plan) > MAX_PLAN:
        raise InputTooLargeError(f"{source}: 'plan' has {len(plan):,} entries; the limit is {MAX_PLAN:,}.")
    for i, entry in enumerate(plan):
        if not isinstance(entry, dict) or not isinstance(entry.get("kind"), str):
            raise ManifestError(f"{source}: plan entry {i} must be an object with a string 'kind'.")
    for name, meta in (manifest.get("tensors") or {}).items():
        if not isinstance(meta, dict):
            raise ManifestError(f"{source}: tensors[{name!r}] must be an object, got {_type_name(meta)}.")
    return manifest


def check_spec(spec: Any, source: str) -> None:
    """A spec's name is a string and its kwargs are bounded JSON values (no 3e7-class heads)."""
    if spec is None:
        return
    if not isinstance(spec.get("name"), str) or not isinstance(spec.get("kwargs", {}), dict):
        raise ManifestError(f"{source}: 'spec' must be {{'name': str, 'kwargs': object}}.")
    for key, value in (spec.get("kwargs") or {}).items():
        where = f"{source}: spec.kwargs.{key}"
        if key == "num_classes":
            if value is None:
                continue
            if not _is_int(value):
                raise ManifestError(f"{where} must be an integer, got {value!r:.40}.")
            if not 1 <= value <= MAX_CLASSES:
                raise InputTooLargeError(f"{where} = {value} is outside [1, {MAX_CLASSES:,}].")
            continue
        items = value if isinstance(value, list) else [value]
        if len(items) > MAX_LIST:
            raise InputTooLargeError(f"{where} has {len(items)} items; the limit is {MAX_LIST}.")
        for item in items:
            if isinstance(item, float) and not math.isfinite(item):
                raise ManifestError(f"{where} holds {item!r}.")
            if isinstance(item, (int, float)) and not isinstance(item, bool) and not 0 <= item <= MAX_WIDTH:
                raise InputTooLargeError(f"{where} = {item!r} is outside [0, {MAX_WIDTH:,}].")


def index_bound(model: torch.nn.Module) -> int:
    """One more than the largest valid channel index: the largest dimension of any of the model's tensors."""
    dims = [max(t.shape) for t in model.state_dict().values() if t.dim() > 0]
    return max(dims, default=1)


def _range_count(value: Any, bound: int, where: str) -> int:
    """How many indices `value` (a list of ints or ``"a-b,c"``) names; every index in [0, bound)."""
    if isinstance(value, list):
        if len(value) > bound or not all(_is_int(v) and 0 <= v < bound for v in value):
            raise ManifestError(f"{where}: channel indices must be at most {bound} integers in [0, {bound}).")
        return len(value)
    if not isinstance(value, str):
        raise ManifestError(f"{where}: channel indices must be a list or a range string, got {_type_name(value)}.")
    if len(value) > 16 * bound + 16:
        raise InputTooLargeError(f"{where}: the index string is {len(value):,} characters long.")
    total = 0
    for part in filter(None, value.split(",")):
        lo, sep, hi = part.partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            raise ManifestError(f"{where}: bad channel index range {part[:40]!r}.")
        first, last = int(lo), int(hi) if sep else int(lo)
        if not 0 <= first <= last < bound:
            raise InputTooLargeError(f"{where}: index range {part[:40]!r} is outside [0, {bound}) of this model.")
        total += last - first + 1
        if total > bound:
            raise InputTooLargeError(f"{where}: names more than {bound} channels.")
    return total


def check_plan_bounds(plan: list[Any], *, bound: int, source: str) -> None:
    """Every integer in the plan below MAX_INDEX; every ``idxs`` field inside the model's index bound."""
    stack: list[tuple[Any, str]] = [(entry, f"plan[{i}]") for i, entry in enumerate(plan)]
    while stack:
        node, where = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "idxs":
                    _range_count(value, bound, f"{source}: {where}.idxs")
                else:
                    stack.append((value, f"{where}.{key}"))
        elif isinstance(node, list):
            if len(node) > MAX_PLAN * 100:
                raise InputTooLargeError(f"{source}: {where} has {len(node):,} items.")
            stack.extend((v, f"{where}[{j}]") for j, v in enumerate(node))
        elif _is_int(node) and abs(node) > MAX_INDEX:
            raise InputTooLargeError(f"{source}: {where} = {node} is beyond {MAX_INDEX:,}.")
        elif isinstance(node, float) and not math.isfinite(node):
            raise ManifestError(f"{source}: {where} = {node!r}.")


def check_codec(
    key: str, codec: Any, parts: Mapping[str, torch.Tensor], expected: torch.Tensor | None, *, source: str
) -> tuple[tuple[int, ...], torch.dtype]:
    """Check one codec entry against the stored parts and the model's tensor; return (shape, dtype)."""
    where = f"{source}: codecs[{key!r}]"
    if expected is None:
        raise ManifestError(f"{where}: the model has no tensor {key!r}.")
    if not isinstance(codec, dict):
        raise ManifestError(f"{where} must be an object, got {_type_name(codec)}.")
    if codec.get("codec") not in CODECS:
        raise ManifestError(f"{where}: codec {str(codec.get('codec'))[:40]!r} is not one of {list(CODECS)}.")
    dtype_name = codec.get("dtype")
    if not isinstance(dtype_name, str) or dtype_name not in DTYPES:
        raise ManifestError(f"{where}: dtype {str(dtype_name)[:40]!r} is not one of {sorted(DTYPES)}.")
    shape = codec.get("shape")
    if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape) or len(shape) > 8:
        raise ManifestError(f"{where}: shape must be a list of at most 8 non-negative integers, got {shape!r:.60}.")
    numel = math.prod(shape)
    if numel > MAX_NUMEL:
        raise InputTooLargeError(f"{where}: shape {shape} has {numel:,} elements; the limit is {MAX_NUMEL:,}.")
    if tuple(shape) != tuple(expected.shape):
        raise ManifestError(f"{where}: shape {shape} does not fit the model's tensor {list(expected.shape)}.")
    dtype = DTYPES[dtype_name]
    values = parts.get(f"{key}::values")
    if values is None or values.dim() != 1 or values.numel() > numel or values.dtype != dtype:
        raise ManifestError(f"{where}: the stored values do not fit shape {shape} and dtype {dtype_name}.")
    if codec["codec"] == "bitmask":
        mask = parts.get(f"{key}::mask")
        if mask is None or mask.dtype != torch.uint8 or mask.numel() != -(-numel // 8):
            raise ManifestError(f"{where}: the stored bitmask does not have the {-(-numel // 8)} bytes of {shape}.")
    else:
        index = parts.get(f"{key}::index")
        if index is None or index.numel() != values.numel() or index.is_floating_point():
            raise ManifestError(f"{where}: the stored index does not match its {values.numel()} values.")
        wide = index.to(torch.int64)
        if wide.numel() and not 0 <= int(wide.min()) <= int(wide.max()) < numel:
            raise ManifestError(f"{where}: a stored index is outside [0, {numel}).")
    return tuple(shape), dtype


def check_report(data: Any, source: str) -> dict[str, Any]:
    """report.json is a JSON object whose sections have the types the report classes read."""
    from torchslim.core.errors import ArtifactError

    if not isinstance(data, dict):
        raise ArtifactError(f"{source}: a report must be a JSON object, got {_type_name(data)}.")
    types: dict[str, tuple[type, ...]] = {
        "model": (str, type(None)),
        "dataset": (str, type(None)),
        "before": (dict, type(None)),
        "after": (dict, type(None)),
        "steps": (list, type(None)),
        "notes": (list, type(None)),
    }
    for key, allowed in types.items():
        if key in data and not isinstance(data[key], allowed):
            raise ArtifactError(f"{source}: report field '{key}' has the wrong type ({_type_name(data[key])}).")
    for i, step in enumerate(data.get("steps") or []):
        if not isinstance(step, dict):
            raise ArtifactError(f"{source}: report steps[{i}] must be an object, got {_type_name(step)}.")
    return data
