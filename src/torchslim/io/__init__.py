"""Safe artifacts: safetensors + JSON, atomic writes, never a pickle.

``io`` depends on ``core`` only (plus ``models`` to rebuild a built-in architecture from its spec).
Plan replays register in :mod:`torchslim.core.plans`; export to a runtime lives in :mod:`torchslim.deploy`.
"""

from torchslim.io.artifact import load, read_manifest, read_report, save, saved_bytes
from torchslim.io.atomic import atomic_path, write_bytes, write_json, write_safetensors, write_text
from torchslim.io.weights import load_safetensors, load_torch_weights, load_weights

__all__ = [
    "atomic_path",
    "load",
    "load_safetensors",
    "load_torch_weights",
    "load_weights",
    "read_manifest",
    "read_report",
    "save",
    "saved_bytes",
    "write_bytes",
    "write_json",
    "write_safetensors",
    "write_text",
]
