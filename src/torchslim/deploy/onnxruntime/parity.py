"""Parity: onnxruntime's output of an exported file versus the PyTorch (torchslim-simulated) output."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from torchslim.core.errors import ModelError
from torchslim.core.layer import compressed_layers
from torchslim.deploy.backend import PARITY_COSINE, OutputParity, compare_outputs
from torchslim.deploy.onnxruntime.inputs import output_tensor, with_decoder_inputs
from torchslim.deploy.onnxruntime.session import run_onnx

ParityReport = OutputParity
"""ONNX output versus the PyTorch (torchslim-simulated) output on the same inputs: the shared
:class:`~torchslim.deploy.backend.OutputParity` (tolerances there), under onnxruntime's name."""


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
    cosine_bound: float | None = PARITY_COSINE,
) -> ParityReport:
    """Compare onnxruntime's output of `path` with `model`'s output on `inputs` (see :class:`ParityReport`).

    The compared output is :func:`reference_output`'s tensor (logits, else the first tensor);
    ``decoder_input_ids`` are added as :func:`export_onnx` adds them
    (:func:`torchslim.deploy.onnxruntime.inputs.with_decoder_inputs`). `cosine_bound` is the close
    test of a compressed model further than `steps` off (None: the step bound only).
    """
    inputs = with_decoder_inputs(model, inputs)
    ref = reference_output(model, inputs)
    got = run_onnx(path, inputs, threads=threads).astype(np.float32)
    if got.shape != ref.shape:
        raise ModelError(f"ONNX output shape {list(got.shape)} differs from the model's {list(ref.shape)}.")
    quantized = any(True for _ in compressed_layers(model))
    return compare_outputs(ref, got, quantized=quantized, steps=steps, rtol=rtol, atol=atol, cosine_bound=cosine_bound)
