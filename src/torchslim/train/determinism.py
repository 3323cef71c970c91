"""Seeding of the one training loop, so a run repeats bit for bit and a resumed run equals an
uninterrupted one.

Inside ``train`` the global torch RNG is forked (restored on return) and seeded with the run's
seed; at the start of every epoch it is reseeded from ``(seed, epoch)`` (:func:`epoch_seed`), and so
is a DataLoader's own ``generator`` (and its sampler's). A checkpoint stores the RNG state
(:func:`rng_state`), and a resumed epoch puts it back (:func:`set_rng_state`) after its data order
was regenerated from the seed.
"""

from __future__ import annotations

from typing import Any

import torch


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of epoch `epoch` (0-based) of a run seeded with `seed`."""
    return (seed * 1_000_003 + (epoch + 1) * 0x9E3779B1) % (2**63 - 1)


def seed_epoch(loader: Any, seed: int, epoch: int) -> None:
    """Seed torch and the loader's (and its samplers') generators for epoch `epoch`."""
    value = epoch_seed(seed, epoch)
    torch.manual_seed(value)
    for owner in (loader, getattr(loader, "sampler", None), getattr(loader, "batch_sampler", None)):
        generator = getattr(owner, "generator", None)
        if isinstance(generator, torch.Generator):
            generator.manual_seed(value)


def rng_devices(device: torch.device) -> list[int]:
    """The CUDA devices whose RNG ``torch.random.fork_rng`` must fork for training on `device`."""
    if device.type == "cuda":
        return [device.index if device.index is not None else torch.cuda.current_device()]
    return []


def rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    """The RNG state to checkpoint: ``rng/torch`` and, on a CUDA device, ``rng/cuda``."""
    tensors = {"rng/torch": torch.get_rng_state()}
    if device.type == "cuda":
        tensors["rng/cuda"] = torch.cuda.get_rng_state(device)
    return tensors


def set_rng_state(saved: dict[str, torch.Tensor], device: torch.device) -> None:
    """Put back what :func:`rng_state` returned."""
    torch.set_rng_state(saved["rng/torch"])
    if "rng/cuda" in saved:
        torch.cuda.set_rng_state(saved["rng/cuda"], device)
