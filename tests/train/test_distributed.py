"""Data-parallel training (torchrun + DDP over gloo): the same global batches, one state, global checkpoints.

The multi-process tests launch ``torchrun --standalone`` (it picks a free port) on
``distributed_worker.py`` and compare with the same worker run in this process (one process, no
process group, the ordinary loop). Without dropout, fine-tuning, distillation and AGP pruning in two
processes end within float rounding of one process; QAT's learned step sizes under Adam amplify the
rounding, so it is compared by accuracy.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from torchslim.core.errors import ConfigError, DataError
from torchslim.train import TrainConfig, train
from torchslim.train.determinism import seed_epoch
from torchslim.train.distributed import (
    ShardedBatches,
    World,
    current_world,
    nproc_requested,
    shard_loader,
    slice_bounds,
    torchrun_command,
    without_nproc,
)

WORKER = Path(__file__).with_name("distributed_worker.py")


def _worker_module() -> Any:
    spec = importlib.util.spec_from_file_location("torchslim_distributed_worker", WORKER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _launch(spec: dict[str, Any], tmp: Path, nproc: int) -> subprocess.CompletedProcess[str]:
    path = tmp / f"spec-{nproc}-{len(list(tmp.glob('spec-*')))}.json"
    path.write_text(json.dumps(spec))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [*command, str(WORKER), str(path)], env=env, capture_output=True, text=True, timeout=600, check=False
    )


def _run_here(spec: dict[str, Any]) -> None:
    worker = _worker_module()
    for technique in spec["techniques"]:
        worker.run(spec, technique, 0)


def _read(out: Path, technique: str, rank: int = 0) -> dict[str, Any]:
    return json.loads((out / technique / f"rank{rank}.json").read_text())


def _max_weight_difference(a: Path, b: Path) -> float:
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert wa.keys() == wb.keys()
    return max(float((wa[k] - wb[k]).abs().max()) for k in wa)


# ------------------------------------------------------------------------------------------------
# the parts, in this process


def test_slices_partition_every_batch_size():
    for size in (2, 3, 7, 64, 63):
        for world in (1, 2, 3):
            if size < world:
                continue
            bounds = [slice_bounds(size, r, world) for r in range(world)]
            assert bounds[0][0] == 0 and bounds[-1][1] == size
            assert all(bounds[i][1] == bounds[i + 1][0] for i in range(world - 1))
            lengths = [stop - start for start, stop in bounds]
            assert max(lengths) - min(lengths) <= 1


def test_rank_loaders_together_yield_the_one_process_batches():
    data = torch.utils.data.TensorDataset(torch.arange(103).float().unsqueeze(1), torch.arange(103))
    loader = torch.utils.data.DataLoader(data, batch_size=16, shuffle=True)
    views = [shard_loader(loader, World(rank, 2)) for rank in range(2)]
    for epoch in range(2):
        seed_epoch(loader, 5, epoch)
        plain = [y for _, y in loader]
        per_rank = []
        for view in views:
            seed_epoch(view, 5, epoch)
            per_rank.append([y for _, y in view])
        assert len(per_rank[0]) == len(per_rank[1]) == len(plain) == len(views[0])  # type: ignore[arg-type]  # loaders
        for k, batch in enumerate(plain):
            assert torch.equal(torch.cat([per_rank[0][k], per_rank[1][k]]), batch)
    assert [len(b) for b in per_rank[0]][-1] == 4 and [len(b) for b in per_rank[1]][-1] == 3  # 103 = 6 * 16 + 7


def test_any_iterable_of_batches_is_sliced_the_same_way():
    batches = [({"ids": torch.arange(5)}, torch.arange(5)), (["a", "b", "c"], torch.tensor([0, 1, 2]))]
    ranks = [list(ShardedBatches(batches, World(r, 2))) for r in range(2)]
    assert torch.equal(ranks[0][0][0]["ids"], torch.tensor([0, 1, 2]))
    assert torch.equal(ranks[1][0][1], torch.tensor([3, 4]))
    assert ranks[0][1][0] == ["a", "b"] and ranks[1][1][0] == ["c"]


def test_a_stream_is_sliced_after_loading_so_ranks_never_share_samples():
    class Stream(torch.utils.data.IterableDataset):
        def __iter__(self):
            return iter([(torch.tensor([float(i)]), i) for i in range(10)])

    loader = torch.utils.data.DataLoader(Stream(), batch_size=4)
    ranks = [[y.tolist() for _, y in shard_loader(loader, World(r, 2))] for r in range(2)]
    assert ranks == [[[0, 1], [4, 5], [8]], [[2, 3], [6, 7], [9]]]


def test_a_batch_smaller_than_the_world_is_a_clear_error():
    batches = [(torch.zeros(1, 2), torch.zeros(1, dtype=torch.long))]
    with pytest.raises(DataError, match="cannot be split over 2 processes"):
        list(ShardedBatches(batches, World(0, 2)))


def test_on_without_several_processes_is_a_config_error_and_auto_trains_alone(toys):
    assert current_world("auto", torch.device("cpu")) is None
    with pytest.raises(ConfigError, match="needs several processes"):
        train(toys.model(), toys.loader(n=32), config=TrainConfig(distributed="on"))
    with pytest.raises(ConfigError, match="distributed"):
        TrainConfig(distributed="sometimes")  # type: ignore[arg-type]  # the error under test


def test_the_process_count_is_not_part_of_a_checkpoints_identity():
    assert TrainConfig(distributed="off").identity() == TrainConfig().identity()


def test_nproc_option_becomes_a_torchrun_line():
    args = ["compress", "lenet", "--nproc", "2", "--data", "digits", "--nproc=3"]
    assert nproc_requested(args) == 2
    assert without_nproc(args) == ["compress", "lenet", "--data", "digits"]
    line = torchrun_command(args, 2)
    assert line[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    assert line[5:] == ["-m", "torchslim", "compress", "lenet", "--data", "digits"]
    assert nproc_requested(["compress"]) is None
    assert nproc_requested(["--nproc", "two"]) is None  # typer's own check reports it


# ------------------------------------------------------------------------------------------------
# two gloo processes against one


def _spec(out: Path, techniques: list[str], **extra: Any) -> dict[str, Any]:
    return {"out": str(out), "techniques": techniques, "seed": 3, "epochs": 3, "batch": 64, **extra}


def test_two_processes_fine_tune_like_one_and_keep_masks_identical(tmp_path):
    """Fine-tuning and AGP pruning (masks change during training) in 2 processes, ranks > 0 starting
    from perturbed weights that the broadcast from rank 0 must replace."""
    techniques = ["finetune", "agp"]
    _run_here(_spec(tmp_path / "one", techniques))
    done = _launch(_spec(tmp_path / "two", techniques, perturb_other_ranks=True), tmp_path, 2)
    assert done.returncode == 0, done.stderr[-3000:]
    for technique in techniques:
        one, two = _read(tmp_path / "one", technique), _read(tmp_path / "two", technique)
        other = _read(tmp_path / "two", technique, rank=1)
        assert two["digests"] == other["digests"]  # every tensor, masks included, bit-identical on both ranks
        assert two["masks"] == other["masks"]
        assert _max_weight_difference(tmp_path / "one" / technique, tmp_path / "two" / technique) < 1e-4
        assert abs(one["accuracy"] - two["accuracy"]) <= 0.002
        assert one["accuracy"] > 0.85
    agp = _read(tmp_path / "two", "agp")
    assert len(agp["masks"]) == 3 and agp["sparsity"] == pytest.approx(0.6, abs=0.01)
    assert agp["masks"] == _read(tmp_path / "one", "agp")["masks"]


@pytest.mark.slow
def test_two_processes_distil_and_quantize_like_one(tmp_path):
    techniques = ["distill", "qat"]
    _run_here(_spec(tmp_path / "one", techniques))
    done = _launch(_spec(tmp_path / "two", techniques, perturb_other_ranks=True), tmp_path, 2)
    assert done.returncode == 0, done.stderr[-3000:]
    for technique in techniques:
        one, two = _read(tmp_path / "one", technique), _read(tmp_path / "two", technique)
        assert two["digests"] == _read(tmp_path / "two", technique, rank=1)["digests"]
        assert one["accuracy"] > 0.85
        assert abs(one["accuracy"] - two["accuracy"]) <= 0.01
    assert _max_weight_difference(tmp_path / "one" / "distill", tmp_path / "two" / "distill") < 1e-4


@pytest.mark.slow
def test_a_killed_two_process_run_resumes_in_one_process(tmp_path):
    run_dir = tmp_path / "run"
    killed = _launch(
        _spec(tmp_path / "killed", ["distill"], run_dir=str(run_dir), checkpoint_every=8, kill_at_step=10), tmp_path, 2
    )
    assert killed.returncode != 0 and not (tmp_path / "killed").exists()
    pointer = json.loads((run_dir / "distill" / "distill" / "checkpoint" / "latest.json").read_text())
    assert pointer["step"] == 8 and not pointer["complete"]
    _run_here(_spec(tmp_path / "resumed", ["distill"], run_dir=str(run_dir), checkpoint_every=8))
    resumed = _read(tmp_path / "resumed", "distill")
    assert resumed["info"]["resumed_from_step"] == 8 and resumed["info"]["steps"] == 36
    _run_here(_spec(tmp_path / "straight", ["distill"]))
    assert _max_weight_difference(tmp_path / "resumed" / "distill", tmp_path / "straight" / "distill") < 1e-4
    assert resumed["accuracy"] == pytest.approx(_read(tmp_path / "straight", "distill")["accuracy"], abs=0.002)


@pytest.mark.slow
def test_a_killed_one_process_run_resumes_in_two_processes(tmp_path):
    run_dir = tmp_path / "run"
    spec = _spec(tmp_path / "killed", ["finetune"], run_dir=str(run_dir), checkpoint_every=8, kill_at_step=10)
    killed = _launch(spec, tmp_path, 1)
    assert killed.returncode != 0
    resumed = _launch({**spec, "out": str(tmp_path / "resumed"), "kill_at_step": None}, tmp_path, 2)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    info = _read(tmp_path / "resumed", "finetune")
    assert info["info"]["resumed_from_step"] == 8 and info["info"]["steps"] == 36
    assert info["digests"] == _read(tmp_path / "resumed", "finetune", rank=1)["digests"]
    _run_here(_spec(tmp_path / "straight", ["finetune"]))
    assert _max_weight_difference(tmp_path / "resumed" / "finetune", tmp_path / "straight" / "finetune") < 1e-4


@pytest.mark.slow
def test_compress_with_nproc_runs_under_torchrun_and_rank_0_writes_the_artifact(tmp_path):
    recipe = tmp_path / "finetune.yaml"
    recipe.write_text("version: 1\nsteps:\n  - technique: finetune\n    config:\n      train: {epochs: 1, lr: 0.003}\n")
    out = tmp_path / "out"
    command = [sys.executable, "-m", "torchslim", "compress", "lenet-300-100", "--data", "fashion-mnist"]
    options = ["--recipe", str(recipe), "--train-samples", "512", "--eval-samples", "256", "--train-batch-size", "64"]
    done = subprocess.run(
        [*command, *options, "--out", str(out), "--nproc", "2", "--json", "--quiet"],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["after"]["accuracy"] > report["before"]["accuracy"]
    assert done.stdout.count('\n  "after": ') == 1  # one report printed: rank 1 neither writes nor prints
    assert sorted(p.name for p in tmp_path.iterdir()) == ["finetune.yaml", "out"]  # checkpoints removed
