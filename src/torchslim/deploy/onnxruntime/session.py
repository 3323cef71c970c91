"""onnxruntime sessions: running an ONNX file, listing the kernels it runs, and timing it."""

from __future__ import annotations

import collections
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from torchslim.core.errors import ArtifactError, ConfigError
from torchslim.deploy.onnxruntime.inputs import onnx_feeds, repeat_first_sample
from torchslim.measure.latency import LatencyStats, check_counts, stats_from_times, time_calls

INTEGER_MAC_OPS = frozenset(
    {
        "QLinearConv",
        "QGemm",
        "QLinearMatMul",
        "MatMulInteger",
        "ConvInteger",
        "DynamicQuantizeMatMul",
        "MatMulIntegerToFloat",
        "QAttention",
    }
)
"""The integer kernels that do a layer's multiply-accumulates (one per quantized conv / linear)."""

INTEGER_OPS = INTEGER_MAC_OPS | frozenset(
    {
        "QLinearAdd",
        "QLinearMul",
        "QLinearAveragePool",
        "QLinearGlobalAveragePool",
        "QLinearSigmoid",
        "QLinearLeakyRelu",
        "QLinearConcat",
        "DynamicQuantizeLSTM",
    }
)
"""onnxruntime kernels that compute on integers."""

FLOAT_COMPUTE_OPS = frozenset({"Conv", "FusedConv", "Gemm", "FusedGemm", "MatMul", "FusedMatMul", "Attention"})
"""onnxruntime kernels that compute MACs in float."""


def ort_session(
    path: str | Path,
    *,
    threads: int | None = None,
    optimized_path: str | Path | None = None,
    spinning: bool = True,
    providers: Sequence[str] | None = None,
) -> Any:
    """An onnxruntime session (CPU unless `providers` says otherwise) with `threads` intra-op
    threads, one inter-op thread, sequential execution and all graph optimizations enabled.

    ``spinning=False`` stops idle intra-op threads from busy-waiting: needed when several sessions
    take turns on few cores (an A/B timing loop), where one session's spinning threads steal the
    cores the next one runs on (measured in ``benchmarks/results/quantization.md``).
    """
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"ONNX file {str(path)!r} does not exist.")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if threads is not None:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if optimized_path is not None:
        options.optimized_model_filepath = str(optimized_path)
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=options, providers=list(providers or ["CPUExecutionProvider"]))


def optimized_op_counts(path: str | Path, *, threads: int = 1) -> collections.Counter[str]:
    """How many of each operator onnxruntime runs after its graph optimizations (fusions included)."""
    import onnx

    with tempfile.TemporaryDirectory(prefix="torchslim-ort-") as tmp:
        opt = Path(tmp) / "optimized.onnx"
        ort_session(path, threads=threads, optimized_path=opt)
        graph = onnx.load(str(opt)).graph
    return collections.Counter(n.op_type for n in graph.node)


def integer_op_summary(path: str | Path) -> dict[str, Any]:
    """Integer vs float compute operators in onnxruntime's optimized graph of `path`."""
    counts = optimized_op_counts(path)
    integer = {k: v for k, v in counts.items() if k in INTEGER_OPS}
    floating = {k: v for k, v in counts.items() if k in FLOAT_COMPUTE_OPS}
    return {"integer_ops": integer, "float_compute_ops": floating, "all_ops": dict(counts)}


def run_onnx(path: str | Path, inputs: Any, *, threads: int | None = None) -> np.ndarray:
    """The first output of the ONNX model at `path` on `inputs`."""
    session = ort_session(path, threads=threads)
    return np.asarray(session.run(None, onnx_feeds(session, inputs))[0])


def measure_latency_onnx(
    onnx_path: str | Path,
    feeds: Any,
    *,
    batch_size: int | None = None,
    warmup: int = 3,
    repeats: int = 20,
    threads: int | None = None,
    providers: Sequence[str] | None = None,
) -> LatencyStats:
    """Latency of an ONNX model under onnxruntime (``runtime="onnxruntime"``).

    `feeds` is a tensor / array (single-input model), a tuple of them, or a dict input name -> value
    (no other keys). `batch_size` repeats the first sample of every feed to that batch size.
    `threads` becomes ``intra_op_num_threads`` (None: the current ``torch.get_num_threads()``, so
    PyTorch and onnxruntime are compared at the same thread count); ``inter_op_num_threads`` is 1
    and the execution mode sequential.
    """
    check_counts(warmup, repeats)
    used_threads = torch.get_num_threads() if threads is None else threads
    if isinstance(used_threads, bool) or not isinstance(used_threads, int) or used_threads < 1:
        raise ConfigError(f"threads={threads!r} must be a positive integer or None.")
    session = ort_session(onnx_path, threads=used_threads, providers=providers)
    arrays = repeat_first_sample(onnx_feeds(session, feeds, strict=True), batch_size)
    first = next(iter(arrays.values()))
    actual_batch = int(first.shape[0]) if first.ndim > 0 else None
    times = time_calls(lambda: session.run(None, arrays), warmup=warmup, repeats=repeats, sync=lambda: None)
    return stats_from_times(times, batch_size=actual_batch, threads=used_threads, runtime="onnxruntime")


def kernel_census(model: torch.nn.Module, path: str | Path) -> dict[str, Any]:
    """How the layers torchslim quantized run in onnxruntime's optimized graph of `path`.

    ``integer_activation_layers``: compressed layers (core layer contract) with integer weights *and*
    integer inputs, which should each become one integer MAC kernel; ``weight_only_layers``: those
    whose input stays float (dequantized weights, float kernels by design); ``integer_mac_kernels`` /
    ``float_mac_kernels``: what the runtime actually runs. Read by the ``float_kernels`` verdict.
    """
    from torchslim.core.layer import compressed_layers

    integer_layers = weight_only = 0
    for _, layer in compressed_layers(model):
        bits = layer.storage_bits()
        if bits.weight >= 32:
            continue
        if bits.activation is not None and bits.activation <= 8:
            integer_layers += 1
        else:
            weight_only += 1
    counts = optimized_op_counts(path)
    return {
        "runtime": "onnxruntime",
        "integer_activation_layers": integer_layers,
        "weight_only_layers": weight_only,
        "integer_mac_kernels": sum(v for k, v in counts.items() if k in INTEGER_MAC_OPS),
        "float_mac_kernels": sum(v for k, v in counts.items() if k in FLOAT_COMPUTE_OPS),
    }
