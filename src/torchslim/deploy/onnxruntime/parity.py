"""Parity: onnxruntime's output of an exported file versus the PyTorch (torchslim-simulated) output."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from torchslim.core.errors import ModelError
from torchslim.core.layer import compressed_layers
from torchslim.deploy.onnxruntime.inputs import output_tensor, with_decoder_inputs
from torchslim.deploy.onnxruntime.session import run_onnx


@dataclasses.dataclass
class ParityReport:
    """ONNX output versus the PyTorch (torchslim-simulated) output on the same inputs.

    For a model with compressed layers the tolerance is ``steps * step`` with ``step`` the step of
    an 8-bit quantizer of the reference output's range, ``(max - min) / 255``; for a float model it
    is ``atol + rtol * |reference|`` elementwise.
    """

    max_abs_diff: float
    step: float | None
    tolerance: float
    quantized: bool
    ok: bool
    max_diff_in_steps: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def reference_output(model: nn.Module, inputs: Any) -> np.ndarray:
    """`model`'s output tensor on `inputs` (eval mode, no grad, modes restored) as float32 numpy.

    For a model returning a ``ModelOutput``, mapping or tuple this is its logits, else its first
    tensor (:func:`torchslim.deploy.onnxruntime.inputs.output_tensor`); the ONNX export writes the
    same tensor as its single output, so parity compares like with like.
    """
    flags = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        with torch.no_grad():
            if isinstance(inputs, Tensor):
                out = model(inputs)
            elif isinstance(inputs, Mapping):
                out = model(**inputs)
            else:
                out = model(*inputs)
    finally:
        for module, flag in flags:
            module.training = flag
    try:
        tensor = output_tensor(out)
    except ModelError as exc:
        raise ModelError(f"check_parity: {type(model).__name__}: {exc}") from exc
    return tensor.detach().float().cpu().numpy()


def check_parity(
    model: nn.Module,
    path: str | Path,
    inputs: Any,
    *,
    steps: float = 2.0,
    rtol: float = 1e-3,
    atol: float = 1e-5,
    threads: int | None = None,
) -> ParityReport:
    """Compare onnxruntime's output of `path` with `model`'s output on `inputs` (see :class:`ParityReport`).

    The compared output is :func:`reference_output`'s tensor (logits, else the first tensor);
    ``decoder_input_ids`` are added as :func:`export_onnx` adds them
    (:func:`torchslim.deploy.onnxruntime.inputs.with_decoder_inputs`).
    """
    inputs = with_decoder_inputs(model, inputs)
    ref = reference_output(model, inputs)
    got = run_onnx(path, inputs, threads=threads).astype(np.float32)
    if got.shape != ref.shape:
        raise ModelError(f"ONNX output shape {list(got.shape)} differs from the model's {list(ref.shape)}.")
    diff = np.abs(got - ref)
    max_diff = float(diff.max()) if diff.size else 0.0
    if any(True for _ in compressed_layers(model)):
        step = float(ref.max() - ref.min()) / 255.0 if ref.size else 0.0
        tolerance = steps * step
        return ParityReport(
            max_diff, step, tolerance, True, max_diff <= tolerance + 1e-12, max_diff / step if step > 0 else None
        )
    bound = atol + rtol * np.abs(ref)
    return ParityReport(max_diff, None, float(bound.max()) if bound.size else atol, False, bool((diff <= bound).all()))
