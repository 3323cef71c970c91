"""Fashion-MNIST from the original IDX ``.gz`` files, decoded with NumPy (no torchvision).

Files are looked up, in order, in: `root` (or ``root/fashion-mnist``) when given; otherwise
``$TORCHSLIM_DATA/fashion-mnist`` (when the variable is set), ``/usr/share/datasets/fashion-mnist``
(Debian package ``dataset-fashion-mnist``) and ``${TORCHSLIM_CACHE:-~/.cache/torchslim}/fashion-mnist``.
Nothing is downloaded at run time.

Splits: ``test`` is the 10,000-image ``t10k`` set in file order. The 60,000 training images are
permuted with `seed` and cut into ``validation`` (5,000), ``calibration`` (1,000) and ``train``
(the remaining 54,000).
"""

from __future__ import annotations

import functools
import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from torchslim.core.errors import DataError, DataNotFoundError
from torchslim.data._splits import Take, check_seed, check_split, split_indices, strict_take

NAME = "fashion-mnist"
MEAN = 0.2860
STD = 0.3530
N_VALIDATION = 5_000
N_CALIBRATION = 1_000
IMAGE_SHAPE = (28, 28)
CLASSES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
UPSTREAM_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com"
_IDX_UINT8 = 0x08


def fashion_mnist(
    root: str | os.PathLike[str] | None = None,
    *,
    split: str = "train",
    subset: int | None = None,
    seed: int = 0,
) -> TensorDataset:
    """Fashion-MNIST as a TensorDataset of (image, label).

    Images are float32 ``[N, 1, 28, 28]`` normalised as ``(x / 255 - 0.2860) / 0.3530``; labels
    are int64 in ``0..9`` (see CLASSES). `split` is one of "train" (54,000), "calibration" (1,000),
    "validation" (5,000) or "test" (10,000); the first three are disjoint seeded cuts of the
    official training files (`seed` has no effect on "test"). `subset` keeps the first `subset`
    samples of the split, in its deterministic order.

    Raises DataNotFoundError (naming the missing files and how to get them) when the files are
    not found, DataError when a file is corrupt or truncated, ConfigError for a bad argument.
    """
    return build(root=root, split=split, seed=seed, take=strict_take(subset, split=split))


def build(*, root: str | os.PathLike[str] | None, split: str, seed: int, take: Take) -> TensorDataset:
    """Load one split, keeping its first ``take(split_size)`` samples (used by `load_splits`)."""
    check_split(split)
    seed = check_seed(seed)
    part = "test" if split == "test" else "train"
    images, labels = load_arrays(find_files(root, part=part))
    if split == "test":
        index = np.arange(len(labels))
    else:
        index = split_indices(
            len(labels), n_validation=N_VALIDATION, n_calibration=N_CALIBRATION, seed=seed, dataset=NAME
        )[split]
    index = index[: take(len(index))]
    x = torch.from_numpy(images[index]).unsqueeze(1).to(torch.float32)
    x.div_(255.0).sub_(MEAN).div_(STD)
    y = torch.from_numpy(labels[index].astype(np.int64))
    return TensorDataset(x, y)


def cache_dir() -> Path:
    """``${TORCHSLIM_CACHE:-~/.cache/torchslim}/fashion-mnist``: where a download should go."""
    base = os.environ.get("TORCHSLIM_CACHE") or "~/.cache/torchslim"
    return Path(base).expanduser() / NAME


def search_dirs(root: str | os.PathLike[str] | None = None) -> list[Path]:
    """Directories searched for the files, in order (see the module docstring)."""
    if root is not None:
        return [Path(root).expanduser(), Path(root).expanduser() / NAME]
    dirs = []
    if os.environ.get("TORCHSLIM_DATA"):
        dirs.append(Path(os.environ["TORCHSLIM_DATA"]).expanduser() / NAME)
    dirs += [SYSTEM_DIR, cache_dir()]
    return dirs


def find_files(root: str | os.PathLike[str] | None = None, *, part: str = "train") -> tuple[Path, Path]:
    """Return the (images, labels) paths of `part` ("train" or "test") from the first directory
    of `search_dirs(root)` that holds both; raise DataNotFoundError otherwise."""
    names = FILES[part]
    dirs = search_dirs(root)
    for directory in dirs:
        images, labels = (directory / name for name in names)
        if images.is_file() and labels.is_file():
            return images, labels
    missing = [str(d / name) for d in dirs for name in names if not (d / name).is_file()]
    where = f"in root={str(root)!r}" if root is not None else "in any of the default locations"
    raise DataNotFoundError(
        f"Fashion-MNIST {part} files not found {where}. Missing: {', '.join(missing)}. "
        f"Get them either way: (1) Debian/Ubuntu, as root: `apt-get install dataset-fashion-mnist` "
        f"(installs into {SYSTEM_DIR}); or (2) download {', '.join(n for p in FILES.values() for n in p)} "
        f"from {UPSTREAM_URL} into {cache_dir()} (or into a directory you pass as `root`)."
    )


def load_arrays(paths: tuple[Path, Path]) -> tuple[np.ndarray, np.ndarray]:
    """Decode and check an (images, labels) IDX pair: uint8 ``[N, 28, 28]`` and uint8 ``[N]``.

    The arrays are read-only and cached in-process per file (path, size, mtime)."""
    image_path, label_path = paths
    images, labels = read_idx(image_path), read_idx(label_path)
    if images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE:
        raise DataError(f"{image_path}: expected images of shape [N, 28, 28], got {list(images.shape)}.")
    if labels.ndim != 1:
        raise DataError(f"{label_path}: expected labels of shape [N], got {list(labels.shape)}.")
    if len(images) != len(labels):
        raise DataError(f"{image_path} holds {len(images)} images but {label_path} holds {len(labels)} labels.")
    if len(labels) and int(labels.max()) >= len(CLASSES):
        raise DataError(f"{label_path}: label {int(labels.max())} is out of range 0..{len(CLASSES) - 1}.")
    return images, labels


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a gzipped IDX file of uint8 values into a read-only array; DataError if it is corrupt."""
    path = Path(path).resolve()
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise DataNotFoundError(f"IDX file not found: {path}.") from None
    return _read_idx_cached(str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _read_idx_cached(path: str, size: int, mtime_ns: int) -> np.ndarray:
    # `size` and `mtime_ns` are only part of the cache key: a replaced file is read again.
    try:
        with gzip.open(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"Corrupt or truncated gzip file {path}: {exc}. Delete it and get it again.") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{path} is not an IDX file (bad magic number {raw[:4].hex() or 'empty'}).")
    if raw[2] != _IDX_UINT8:
        raise DataError(f"{path}: IDX data type 0x{raw[2]:02x} is not supported (only 0x08, uint8).")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"Truncated IDX file {path}: the header ends early.")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = math.prod(shape)
    if len(raw) - header != expected:
        raise DataError(
            f"Corrupt or truncated IDX file {path}: shape {list(shape)} needs {expected} bytes of data, "
            f"found {len(raw) - header}. Delete it and get it again."
        )
    array = np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)
    array.flags.writeable = False
    return array
