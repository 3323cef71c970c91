"""ExecuTorch's Python runtime: loading a ``.pte`` program, running it, timing it.

The XNNPACK delegate runs on one process-wide thread pool; its size is set before a program is
loaded for a run or a timing (``threads``, None: ``torch.get_num_threads()``) and stays so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from torchslim.core.errors import ArtifactError, ConfigError
from torchslim.measure.latency import LatencyStats, check_counts, stats_from_times, time_calls


def _tensors(inputs: Any) -> list[Tensor]:
    if isinstance(inputs, dict):
        values = list(inputs.values())
    elif isinstance(inputs, (Tensor, np.ndarray)):
        values = [inputs]
    elif isinstance(inputs, (tuple, list)):
        values = list(inputs)
    else:
        raise ConfigError(f"inputs must be a tensor, a tuple of tensors or a dict, got {type(inputs).__name__}.")
    return [v.detach().cpu().contiguous() if isinstance(v, Tensor) else torch.from_numpy(np.asarray(v)) for v in values]


def set_xnnpack_threads(threads: int | None) -> int:
    """Size XNNPACK's process-wide thread pool to `threads` (None: ``torch.get_num_threads()``);
    returns the size. Call it before a program is loaded, never while one is alive: a program's
    XNNPACK delegate keeps the pool it was loaded with, and resetting the pool under a loaded
    program hung the next ``execute`` (measured: efficientnet-lite0, executorch 1.5.1)."""
    from executorch.extension.pybindings import portable_lib

    used = torch.get_num_threads() if threads is None else threads
    if isinstance(used, bool) or not isinstance(used, int) or used < 1:
        raise ConfigError(f"threads={threads!r} must be a positive integer or None.")
    if int(portable_lib._threadpool_get_thread_count()) != used:
        portable_lib._unsafe_reset_threadpool(used)
    return used


def load_method(path: str | Path) -> Any:
    """The ``forward`` method of the program at `path`, loaded by ExecuTorch's runtime."""
    from executorch.runtime import Runtime

    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"ExecuTorch program {str(path)!r} does not exist.")
    return Runtime.get().load_program(path).load_method("forward")


def run_executorch(path: str | Path, inputs: Any, *, threads: int | None = None) -> np.ndarray:
    """The first output of the program at `path` on `inputs`."""
    set_xnnpack_threads(threads)
    method = load_method(path)
    out = method.execute(_tensors(inputs))[0]
    return np.asarray(out.detach().numpy() if isinstance(out, Tensor) else out)


def measure_latency_executorch(
    path: str | Path,
    example_input: Any,
    *,
    batch_size: int | None = None,
    warmup: int = 3,
    repeats: int = 20,
    threads: int | None = None,
) -> LatencyStats:
    """Latency of the program at `path` under ExecuTorch's runtime (``runtime="executorch"``).

    The first sample of every input is repeated to `batch_size`; a program has static shapes
    (see :mod:`torchslim.deploy.executorch.export`), so export it with an input of that batch size.
    """
    check_counts(warmup, repeats)
    tensors = _tensors(example_input)
    if batch_size is not None:
        if batch_size < 1:
            raise ConfigError(f"batch_size={batch_size!r} must be >= 1.")
        tensors = [t[:1].repeat(batch_size, *([1] * (t.dim() - 1))).contiguous() if t.dim() else t for t in tensors]
    used = set_xnnpack_threads(threads)
    method = load_method(path)
    expected = [list(method.metadata.input_tensor_meta(i).sizes()) for i in range(method.metadata.num_inputs())]
    got = [list(t.shape) for t in tensors]
    if expected != got:
        raise ConfigError(
            f"ExecuTorch program {str(path)!r} takes inputs of shapes {expected}, got {got}: export it with an "
            "example input of the batch size to time (its shapes are static)."
        )
    actual_batch = int(tensors[0].shape[0]) if tensors[0].dim() > 0 else None
    times = time_calls(lambda: method.execute(tensors), warmup=warmup, repeats=repeats, sync=lambda: None)
    return stats_from_times(times, batch_size=actual_batch, threads=used, runtime="executorch")
