"""OpenVINO on the CPU: compiling an IR file with a thread count, running it, listing the kernel
precisions the CPU plugin chose, and timing it with OpenVINO's own infer request."""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from torchslim.core.errors import ArtifactError, ConfigError
from torchslim.measure.latency import LatencyStats, check_counts, stats_from_times, time_calls

DEFAULT_PRECISION = "f32"
"""``INFERENCE_PRECISION_HINT``: f32 keeps float layers in float32 (parity with PyTorch); the CPU
plugin's own default is bf16 where the CPU has bf16 instructions, which changes float results."""

COMPUTE_LAYERS = frozenset({"Convolution", "GroupConvolution", "FullyConnected", "MatMul", "Deconvolution"})
"""Layer types of the CPU plugin's runtime graph that carry the MACs."""


def _arrays(inputs: Any, names: list[str]) -> list[np.ndarray]:
    if isinstance(inputs, dict):
        missing = [n for n in names if n not in inputs]
        if missing:
            raise ConfigError(f"OpenVINO inputs {missing} are missing from the given inputs {list(inputs)}.")
        values = [inputs[n] for n in names]
    elif isinstance(inputs, (Tensor, np.ndarray)):
        values = [inputs]
    elif isinstance(inputs, (tuple, list)):
        values = list(inputs)
    else:
        raise ConfigError(f"inputs must be a tensor, a tuple of tensors or a dict, got {type(inputs).__name__}.")
    if len(values) != len(names):
        raise ConfigError(f"The OpenVINO model takes {len(names)} inputs {names}, got {len(values)}.")
    return [v.detach().cpu().numpy() if isinstance(v, Tensor) else np.asarray(v) for v in values]


def _repeat(arrays: list[np.ndarray], batch_size: int | None) -> list[np.ndarray]:
    if batch_size is None:
        return arrays
    if batch_size < 1:
        raise ConfigError(f"batch_size={batch_size!r} must be >= 1.")
    return [np.ascontiguousarray(np.repeat(a[:1], batch_size, axis=0)) if a.ndim > 0 else a for a in arrays]


def compile_ir(
    path: str | Path,
    *,
    threads: int | None = None,
    precision: str = DEFAULT_PRECISION,
    shapes: list[tuple[int, ...]] | None = None,
    streams: int = 1,
    profile: bool = False,
) -> Any:
    """The IR at `path` compiled for the CPU: `streams` streams (one: the LATENCY hint, more: the
    THROUGHPUT hint) sharing `threads` inference threads (None: ``torch.get_num_threads()``),
    `precision` as the inference precision hint, the inputs fixed to `shapes` when given (static
    shapes let the plugin pick its kernels ahead), and with `profile` the per-layer counters
    (``PERF_COUNT``: an infer request's ``get_profiling_info()``)."""
    import openvino as ov

    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"OpenVINO IR file {str(path)!r} does not exist.")
    used = torch.get_num_threads() if threads is None else threads
    if isinstance(used, bool) or not isinstance(used, int) or used < 1:
        raise ConfigError(f"threads={threads!r} must be a positive integer or None.")
    core = ov.Core()
    model = core.read_model(str(path))
    if shapes is not None:
        model.reshape({model.inputs[i].get_any_name(): list(s) for i, s in enumerate(shapes)})
    if isinstance(streams, bool) or not isinstance(streams, int) or streams < 1:
        raise ConfigError(f"streams={streams!r} must be a positive integer.")
    config = {
        "INFERENCE_NUM_THREADS": used,
        "NUM_STREAMS": streams,
        "PERFORMANCE_HINT": "LATENCY" if streams == 1 else "THROUGHPUT",
        "INFERENCE_PRECISION_HINT": precision,
        "PERF_COUNT": profile,
    }
    return core.compile_model(model, "CPU", config)


def input_names(compiled: Any) -> list[str]:
    """The input names of a compiled model (or of a read one)."""
    return [port.get_any_name() for port in compiled.inputs]


def ir_input_arrays(path: str | Path, inputs: Any) -> list[np.ndarray]:
    """`inputs` as arrays in the order of the IR's inputs (read, not compiled)."""
    import openvino as ov

    if not Path(path).is_file():
        raise ArtifactError(f"OpenVINO IR file {str(path)!r} does not exist.")
    return _arrays(inputs, input_names(ov.Core().read_model(str(path))))


def run_openvino(path: str | Path, inputs: Any, *, threads: int | None = None) -> np.ndarray:
    """The first output of the IR at `path` on `inputs`."""
    compiled = compile_ir(path, threads=threads)
    result = compiled(_arrays(inputs, input_names(compiled)))
    return np.asarray(result[compiled.outputs[0]])


def kernel_precisions(path: str | Path, example_input: Any, *, threads: int = 1) -> dict[str, int]:
    """How many compute layers of the CPU plugin's runtime graph run in each precision
    (``"Convolution u8"``, ``"FullyConnected f32"``, ...), for the example input's shapes."""
    compiled = compile_ir(path, threads=threads, shapes=[a.shape for a in ir_input_arrays(path, example_input)])
    counts: collections.Counter[str] = collections.Counter()
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        kind = info["layerType"].astype(str) if "layerType" in info else op.get_type_name()
        if kind in COMPUTE_LAYERS:
            precision = info["runtimePrecision"].astype(str) if "runtimePrecision" in info else "unknown"
            counts[f"{kind} {precision}"] += 1
    return dict(counts)


def measure_latency_openvino(
    path: str | Path,
    example_input: Any,
    *,
    batch_size: int | None = None,
    warmup: int = 3,
    repeats: int = 20,
    threads: int | None = None,
    precision: str = DEFAULT_PRECISION,
) -> LatencyStats:
    """Latency of the IR at `path` under OpenVINO's CPU plugin (``runtime="openvino"``).

    The first sample of every input is repeated to `batch_size`; the model is compiled for exactly
    those shapes, and one infer request is timed (``warmup`` untimed calls, then ``repeats``).
    """
    check_counts(warmup, repeats)
    used = torch.get_num_threads() if threads is None else threads
    arrays = _repeat(ir_input_arrays(path, example_input), batch_size)
    compiled = compile_ir(path, threads=used, precision=precision, shapes=[a.shape for a in arrays])
    request = compiled.create_infer_request()
    feeds = {i: a for i, a in enumerate(arrays)}
    actual_batch = int(arrays[0].shape[0]) if arrays[0].ndim > 0 else None
    times = time_calls(lambda: request.infer(feeds), warmup=warmup, repeats=repeats, sync=lambda: None)
    return stats_from_times(times, batch_size=actual_batch, threads=used, runtime="openvino")
