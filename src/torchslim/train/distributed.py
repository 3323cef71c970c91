"""Data-parallel training of the one loop: ``torchrun`` + DistributedDataParallel (gloo on CPU, NCCL on CUDA).

Launch any command that trains under ``torchrun`` and the loop trains data-parallel by itself::

    torchrun --standalone --nproc-per-node 2 -m torchslim compress lenet --data digits --recipe kd.yaml --out runs/x
    torchslim compress lenet --data digits --recipe kd.yaml --out runs/x --nproc 2     # spawns the line above

:func:`data_parallel` is called by :func:`torchslim.train.train` at the start of every call. With
``TrainConfig.distributed="auto"`` (the default) it trains data-parallel when a process group of more
than one process is initialised, or when torchrun's environment (``RANK``, ``WORLD_SIZE``,
``MASTER_ADDR``) says so, in which case it initialises the group (``env://``); ``"on"`` insists on it
(a :class:`~torchslim.core.errors.ConfigError` without one), ``"off"`` trains every process alone.

What stays the same as one process (Goyal et al. 2017, "Accurate, large minibatch SGD", keep the
global batch and the learning rate; Li et al. 2020, "PyTorch Distributed", for DDP itself):

* **The global batch.** Every rank iterates the *same* global batches as one process would (the
  loader's own sampler, seeded per epoch by :mod:`~torchslim.train.determinism` on every rank) and
  keeps its contiguous slice: rank ``r`` of ``W`` takes ``B_r`` of the ``B`` samples (``B/W`` when it
  divides). The loss of rank ``r`` is weighted by ``W B_r / B`` before DDP averages the gradients, so
  the averaged gradient is the gradient of the mean loss over the global batch, also for a last,
  smaller batch that does not split evenly. The loss the loop logs is that global mean.
* **One state.** Before training, the model and every teacher (a hook's ``teacher``, the context's)
  are broadcast from rank 0, so masks (pruning parametrizations), quantizer scales and observers,
  and the teacher are rank 0's on every rank; DDP keeps buffers in step at every forward. The
  digest of every parameter and buffer is compared across ranks when training starts and ends, and
  a difference raises :class:`~torchslim.core.errors.ModelError` naming the tensors.
* **Global checkpoints.** Only rank 0 writes them (atomically, :mod:`torchslim.train.checkpoint`);
  they hold the unwrapped model, the optimizer, and step / epoch / batch counters in global batches,
  so a run resumes with any number of processes, one included.

Dropout and other torch randomness draw from the same seeded stream on every rank (the usual
same-seed-everywhere DDP setup), so ranks drop the same positions of their own samples.
"""

from __future__ import annotations

import atexit
import dataclasses
import hashlib
import os
import subprocess
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, IterableDataset

from torchslim.core.errors import ConfigError, DataError, ModelError

MODES = ("auto", "on", "off")
"""Values of ``TrainConfig.distributed``."""


@dataclasses.dataclass(frozen=True)
class World:
    """This process's place in the process group: `rank` of `size` processes."""

    rank: int
    size: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_size() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise ConfigError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} must be an integer.") from None


def under_launcher() -> bool:
    """True when this process was started by torchrun (or another launcher setting ``RANK`` and ``WORLD_SIZE``)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def is_main_process() -> bool:
    """True unless this process is a rank other than 0 of a data-parallel run (it then writes no outputs)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return os.environ.get("RANK", "0") == "0"


def backend_for(device: torch.device) -> str:
    """``nccl`` for CUDA, ``gloo`` otherwise."""
    return "nccl" if device.type == "cuda" else "gloo"


def current_world(mode: str, device: torch.device) -> World | None:
    """The process group to train in, initialising it from torchrun's environment when needed; None for alone."""
    if mode not in MODES:
        raise ConfigError(f"TrainConfig.distributed={mode!r} must be one of {list(MODES)}.")
    if mode == "off" or not dist.is_available():
        if mode == "on":
            raise ConfigError("TrainConfig.distributed='on' but this torch build has no torch.distributed.")
        return None
    if not dist.is_initialized() and under_launcher() and _env_size() > 1:
        dist.init_process_group(backend=backend_for(device), init_method="env://")
        atexit.register(_destroy_group)
    if dist.is_initialized() and dist.get_world_size() > 1:
        return World(rank=dist.get_rank(), size=dist.get_world_size())
    if mode == "on":
        raise ConfigError(
            "TrainConfig.distributed='on' needs several processes: launch with `torchrun --nproc-per-node N ...` "
            "(or `torchslim compress ... --nproc N`), or initialise torch.distributed yourself."
        )
    return None


def _destroy_group() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def rank_device(device: torch.device) -> torch.device:
    """A CUDA device without an index becomes the rank's own (``LOCAL_RANK``); others are kept."""
    if device.type != "cuda" or device.index is not None:
        return device
    local = int(os.environ.get("LOCAL_RANK", "0"))
    torch.cuda.set_device(local)
    return torch.device("cuda", local)


# ------------------------------------------------------------------------------------------------
# data: every rank takes its slice of the same global batch


def slice_bounds(size: int, rank: int, world: int) -> tuple[int, int]:
    """``[start, stop)`` of rank `rank`'s contiguous slice of a batch of `size` samples (first ranks get one more)."""
    base, extra = divmod(size, world)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def _check_splittable(size: int, world: int) -> None:
    if size < world:
        raise DataError(
            f"A training batch of {size} sample(s) cannot be split over {world} processes; use a batch size that "
            "leaves a last batch of at least one sample per process, or drop_last=True."
        )


class GlobalBatchSampler:
    """Yields this rank's slice of each batch of indices that `inner` (the loader's batch sampler) yields."""

    def __init__(self, inner: Iterable[list[int]], world: World) -> None:
        self.inner = inner
        self.world = world

    @property
    def generator(self) -> torch.Generator | None:
        """The inner sampler's generator, so that the per-epoch seeding reaches it."""
        sampler = getattr(self.inner, "sampler", None)
        found = getattr(sampler, "generator", None) or getattr(self.inner, "generator", None)
        return found if isinstance(found, torch.Generator) else None

    def __iter__(self) -> Iterator[list[int]]:
        for indices in self.inner:
            batch = list(indices)
            _check_splittable(len(batch), self.world.size)
            start, stop = slice_bounds(len(batch), self.world.rank, self.world.size)
            yield batch[start:stop]

    def __len__(self) -> int:
        return len(self.inner)  # type: ignore[arg-type]  # a loader without len() never asks


def _slice_part(part: Any, start: int, stop: int) -> Any:
    if isinstance(part, torch.Tensor):
        return part[start:stop]
    if isinstance(part, Mapping):
        return {k: _slice_part(v, start, stop) for k, v in part.items()}
    if isinstance(part, (list, tuple)):
        return type(part)(part[start:stop])
    raise DataError(f"Cannot split a training batch part of type {type(part).__name__} over processes.")


def slice_batch(batch: Any, start: int, stop: int) -> Any:
    """Samples ``[start, stop)`` of an ``(inputs, labels)`` batch (tensors, mappings of tensors, lists)."""
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise DataError(f"Training batches must be (inputs, labels) pairs to be split; got {type(batch).__name__}.")
    pair = (_slice_part(batch[0], start, stop), _slice_part(batch[1], start, stop))
    return pair if isinstance(batch, tuple) else list(pair)


def batch_size_of(batch: Any) -> int:
    """Samples in a training batch ``(inputs, labels)``: the length of its labels."""
    labels = batch[1] if isinstance(batch, (tuple, list)) and len(batch) == 2 else batch
    return len(labels)


class ShardedBatches:
    """Any iterable of ``(inputs, labels)`` batches, of which this rank keeps its slice of every batch."""

    def __init__(self, batches: Iterable[Any], world: World) -> None:
        self.batches = batches
        self.world = world
        self.generator = getattr(batches, "generator", None)
        self.sampler = getattr(batches, "sampler", None)

    def __iter__(self) -> Iterator[Any]:
        for batch in self.batches:
            size = batch_size_of(batch)
            _check_splittable(size, self.world.size)
            yield slice_batch(batch, *slice_bounds(size, self.world.rank, self.world.size))

    def __len__(self) -> int:
        return len(self.batches)  # type: ignore[arg-type]  # steps_per_epoch catches the TypeError


def shard_loader(loader: Iterable[Any], world: World) -> Iterable[Any]:
    """This rank's view of `loader`: a DataLoader over the same map-style dataset whose batch sampler
    keeps this rank's slice of every global batch (only this rank's samples are loaded), or, for other
    iterables (an IterableDataset's loader included), the same batches sliced after loading."""
    if (
        isinstance(loader, DataLoader)
        and loader.batch_sampler is not None
        and not isinstance(loader.dataset, IterableDataset)
    ):
        extra: dict[str, Any] = {}
        if loader.num_workers > 0:
            extra = {"prefetch_factor": loader.prefetch_factor, "persistent_workers": loader.persistent_workers}
        return DataLoader(
            loader.dataset,
            batch_sampler=GlobalBatchSampler(loader.batch_sampler, world),
            num_workers=loader.num_workers,
            collate_fn=loader.collate_fn,
            pin_memory=loader.pin_memory,
            timeout=loader.timeout,
            worker_init_fn=loader.worker_init_fn,
            generator=loader.generator,
            **extra,
        )
    return ShardedBatches(loader, world)


# ------------------------------------------------------------------------------------------------
# state: one copy, rank 0's


def _modules(modules: Iterable[Any]) -> list[nn.Module]:
    unique: list[nn.Module] = []
    for module in modules:
        if isinstance(module, nn.Module) and all(module is not m for m in unique):
            unique.append(module)
    return unique


def broadcast_state(module: nn.Module) -> None:
    """Overwrite every parameter and buffer of `module` by rank 0's, in place."""
    with torch.no_grad():
        for tensor in module.state_dict(keep_vars=True).values():
            data = tensor.data if tensor.dtype != torch.bool else tensor.data.view(torch.uint8)
            dist.broadcast(data, src=0)


def state_digests(module: nn.Module) -> dict[str, str]:
    """SHA-256 of each parameter and buffer of `module` (name -> hex digest)."""
    digests = {}
    for name, tensor in module.state_dict().items():
        t = tensor.detach().to("cpu").contiguous()
        digests[name] = hashlib.sha256(t.reshape(-1).view(torch.uint8).numpy().tobytes()).hexdigest()
    return digests


def check_same_state(module: nn.Module, world: World, *, what: str) -> None:
    """Raise :class:`ModelError` naming the tensors (masks, quantizer state, weights) that differ across ranks."""
    own = state_digests(module)
    gathered: list[dict[str, str] | None] = [None] * world.size
    dist.all_gather_object(gathered, own)
    differ = sorted({name for other in gathered if other is not None for name in own if other.get(name) != own[name]})
    if differ:
        shown = ", ".join(differ[:8]) + (" ..." if len(differ) > 8 else "")
        raise ModelError(f"{what} differs across the {world.size} processes in {len(differ)} tensor(s): {shown}.")


class DataParallel:
    """What the loop needs of a data-parallel run: the DDP wrapper to call and the global loss of a step."""

    def __init__(self, world: World, model: nn.Module, shared: Sequence[nn.Module]) -> None:
        self.world = world
        self.model = model
        self.shared = list(shared)
        self.module: nn.Module = model

    def wrap(self) -> None:
        """Wrap the model in DistributedDataParallel (after hooks and a resume changed it) and check
        that every rank holds the same model and teachers."""
        device = next((p.device for p in self.model.parameters()), torch.device("cpu"))
        ids = [device.index] if device.type == "cuda" else None
        self.module = DistributedDataParallel(self.model, device_ids=ids)
        self.check("at the start of training")

    def check(self, when: str) -> None:
        check_same_state(self.model, self.world, what=f"The model {when}")
        for i, module in enumerate(self.shared):
            check_same_state(module, self.world, what=f"Teacher {i} ({type(module).__name__}) {when}")

    def global_loss(self, loss: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, float]:
        """This rank's loss weighted by ``W B_r / B`` (so DDP's mean of gradients is the global batch's)
        and the mean loss over the global batch of ``B`` samples (the same number on every rank)."""
        packed = torch.stack([loss.detach().double() * batch_size, torch.tensor(float(batch_size), device=loss.device)])
        dist.all_reduce(packed)
        total, count = float(packed[0]), float(packed[1])
        weight = self.world.size * batch_size / count
        return (loss if weight == 1.0 else loss * weight), total / count

    def barrier(self) -> None:
        dist.barrier()


def data_parallel(
    model: nn.Module, loader: Iterable[Any], *, mode: str, device: torch.device, shared: Iterable[Any] = ()
) -> tuple[DataParallel | None, Iterable[Any], torch.device]:
    """Set up a call of ``train``: (the data-parallel view or None, this rank's loader, this rank's device).

    `model` and the modules in `shared` (teachers) are broadcast from rank 0 first.
    """
    world = current_world(mode, device)
    if world is None:
        return None, loader, device
    device = rank_device(device)
    teachers = [m for m in _modules(shared) if m is not model]
    model.to(device)
    for module in (model, *teachers):
        broadcast_state(module)
    return DataParallel(world, model, teachers), shard_loader(loader, world), device


# ------------------------------------------------------------------------------------------------
# the launcher: `torchslim ... --nproc N` runs the same command under torchrun


def nproc_requested(args: Sequence[str]) -> int | None:
    """The value of ``--nproc`` in `args` (``--nproc N`` or ``--nproc=N``), None when absent or not a number."""
    for i, arg in enumerate(args):
        value = arg.split("=", 1)[1] if arg.startswith("--nproc=") else None
        if arg == "--nproc" and i + 1 < len(args):
            value = args[i + 1]
        if value is not None:
            return int(value) if value.isdigit() else None  # anything else: the command's own check says why
    return None


def without_nproc(args: Sequence[str]) -> list[str]:
    """`args` without ``--nproc N`` / ``--nproc=N``."""
    out: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out


def torchrun_command(args: Sequence[str], nproc: int) -> list[str]:
    """``python -m torch.distributed.run --standalone --nproc-per-node N -m torchslim ARGS`` (without --nproc)."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "-m",
        "torchslim",
        *without_nproc(args),
    ]


def launch_torchrun(args: Sequence[str], nproc: int) -> int:
    """Run the torchslim command `args` in `nproc` processes under torchrun; return its exit code."""
    return subprocess.run(torchrun_command(args, nproc), check=False).returncode


__all__ = [
    "DataParallel",
    "GlobalBatchSampler",
    "ShardedBatches",
    "World",
    "check_same_state",
    "current_world",
    "data_parallel",
    "is_main_process",
    "launch_torchrun",
    "nproc_requested",
    "shard_loader",
    "slice_bounds",
    "torchrun_command",
    "under_launcher",
]
