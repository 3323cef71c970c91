"""Safe artifacts: safetensors + JSON, atomic writes, never a pickle."""

from torchslim.io.artifact import load, read_manifest, read_report, register_plan_replay, save
from torchslim.io.onnx_export import check_parity, export_onnx, integer_op_summary
from torchslim.io.atomic import atomic_path, write_bytes, write_json, write_safetensors, write_text
from torchslim.io.weights import load_safetensors, load_torch_weights, load_weights

__all__ = [
    "atomic_path", "check_parity", "export_onnx", "integer_op_summary", "load", "load_safetensors", "load_torch_weights", "load_weights", "read_manifest",
    "read_report", "register_plan_replay", "save", "write_bytes", "write_json", "write_safetensors",
    "write_text",
]
