"""`CompressionResult`: a compressed model with its report; save, export, deploy."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import nn

from torchslim.core.errors import ConfigError
from torchslim.core.recipe import Recipe
from torchslim.deploy.backend import PARITY_COSINE
from torchslim.report import Report


@dataclasses.dataclass
class CompressionResult:
    """A compressed model with its report; `save` writes the artifact (safetensors + JSON + report)."""

    model: nn.Module
    report: Report
    recipe: Recipe
    example_input: Any = None
    original: nn.Module | None = None
    """The model before compression (read-only): the fp32 baseline :meth:`deploy` times beside it."""

    def deploy(
        self,
        *,
        batch: int = 1,
        threads: int | None = None,
        target: str = "auto",
        example_input: Any = None,
        strict: bool = False,
        directory: str | Path | None = None,
        parity_steps: float = 2.0,
        parity_cosine: float | None = PARITY_COSINE,
    ) -> Any:
        """Time the compressed model on every available runtime (``target="auto"``) or on `target`, at
        `batch` and `threads`, next to its original; keep the fastest with parity.

        Returns a :class:`torchslim.deploy.Selection` (``best``, ``margin``, per-backend facts;
        ``to_dict()`` for a report). A model slower than its original on every backend warns, or
        raises with `strict`. `parity_steps` (8-bit steps of the output range, default 2) and
        `parity_cosine` (the close test; None: off) are the compressed model's parity bounds (see
        :func:`torchslim.deploy.select_backend`).
        """
        from torchslim.deploy import select_backend

        example = example_input if example_input is not None else self.example_input
        if example is None:
            raise ConfigError("deploy: no example input is known for this model; pass example_input=...")
        return select_backend(
            self.model,
            example,
            batch_size=batch,
            threads=threads if threads is not None else torch.get_num_threads(),
            candidates=None if target == "auto" else [target],
            baseline=self.original,
            strict=strict,
            directory=directory,
            parity_steps=parity_steps,
            parity_cosine=parity_cosine,
        )

    def export_onnx(self, path: str | Path, example_input: Any = None, **kwargs: Any) -> Any:
        """Export the compressed model to ONNX (int8 QDQ for quantized layers) and return the export
        facts (:class:`torchslim.deploy.OnnxExport`); `kwargs` go to :func:`torchslim.deploy.export_onnx`."""
        from torchslim.deploy import export_onnx

        return export_onnx(
            self.model, path, example_input if example_input is not None else self.example_input, **kwargs
        )

    def save(self, directory: str | Path, *, html: bool = True) -> Path:
        """Write the artifact with ``report.json`` (and ``report.html`` unless ``html=False``)."""
        from torchslim.io import save
        from torchslim.report.html import render_html

        extra: dict[str, str | bytes] | None = {"report.html": render_html(self.report)} if html else None
        return save(
            self.model,
            directory,
            config={"recipe": self.recipe.to_dict()},
            report=self.report.to_dict(),
            extra_files=extra,
        )
