"""The experiment directory: one folder per level, written atomically, read back on resume.

Layout under the run directory::

    experiment.json          what the run is (config without ``levels``, seed, fingerprint of θ_0, layers)
    rewind.safetensors       θ_k, the weights the survivors are rewound to (after level 0)
    level_00/ ...            masks.safetensors, ticket.safetensors (trained weights, masks baked in),
    level_01/ ...            random_masks.safetensors (when that control runs), metrics.json
    checkpoints/             the training loop's checkpoints of the level in progress

Every file is written through :mod:`torchslim.io.atomic`, and a level's ``metrics.json`` last: a
level counts as done only when its metrics exist, so a run killed anywhere resumes at the first
level without them (and its training at the last checkpoint). A directory written for another
experiment is refused, never silently continued.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch

from torchslim.core.errors import ArtifactError, OutputError
from torchslim.io.atomic import write_json, write_safetensors
from torchslim.io.weights import load_safetensors

EXPERIMENT_FILE = "experiment.json"
METRICS_FILE = "metrics.json"


def level_dir_name(level: int) -> str:
    return f"level_{level:02d}"


def _difference(saved: dict[str, Any], current: dict[str, Any]) -> str:
    keys = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
    return ", ".join(f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in keys)[:600]


class LevelStore:
    """Reads and writes the levels of one experiment; with no directory it keeps nothing (no resume)."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory

    @property
    def checkpoints(self) -> Path | None:
        return None if self.directory is None else self.directory / "checkpoints"

    def open(self, identity: dict[str, Any]) -> None:
        """Start or continue the experiment `identity`; OutputError when the directory holds another one."""
        if self.directory is None:
            return
        path = self.directory / EXPERIMENT_FILE
        if path.is_file():
            try:
                saved = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                raise ArtifactError(f"Lottery run {str(path)!r} cannot be read: {exc}") from exc
            current = json.loads(json.dumps(identity))
            if saved != current:
                raise OutputError(
                    f"{str(self.directory)!r} holds a lottery run with other settings ({_difference(saved, current)}); "
                    "choose another output directory or delete this one."
                )
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        write_json(path, identity)

    def save_tensors(self, name: str, tensors: dict[str, torch.Tensor]) -> None:
        if self.directory is not None:
            write_safetensors(self.directory / name, tensors)

    def load_tensors(self, name: str) -> dict[str, torch.Tensor] | None:
        if self.directory is None or not (self.directory / name).is_file():
            return None
        return load_safetensors(self.directory / name)

    def completed(self, level: int) -> dict[str, Any] | None:
        """The metrics of `level` when it was completed, else None."""
        if self.directory is None:
            return None
        path = self.directory / level_dir_name(level) / METRICS_FILE
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ArtifactError(f"Lottery level file {str(path)!r} cannot be read: {exc}") from exc
        if not isinstance(data, dict) or data.get("level") != level:
            raise ArtifactError(f"Lottery level file {str(path)!r} does not describe level {level}.")
        return data

    def write_level(self, level: int, tensors: dict[str, dict[str, torch.Tensor]], metrics: dict[str, Any]) -> None:
        """Write `tensors` (file stem -> tensors) then the metrics that mark the level complete."""
        if self.directory is None:
            return
        folder = self.directory / level_dir_name(level)
        for stem, group in tensors.items():
            write_safetensors(folder / f"{stem}.safetensors", group)
        write_json(folder / METRICS_FILE, metrics)
        if self.checkpoints is not None:
            shutil.rmtree(self.checkpoints / level_dir_name(level), ignore_errors=True)

    def read_level(self, level: int, stem: str) -> dict[str, torch.Tensor]:
        """The tensors `stem` of a completed level (ArtifactError naming the file when missing)."""
        assert self.directory is not None
        path = self.directory / level_dir_name(level) / f"{stem}.safetensors"
        if not path.is_file():
            raise ArtifactError(f"Lottery level {level} is marked complete but {str(path)!r} is missing.")
        return load_safetensors(path)
