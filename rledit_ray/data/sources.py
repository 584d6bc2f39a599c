"""Readers for image data that users bring, and one-line errors for their mistakes.

Each reader returns `RawImages`: pixels shaped (N, C, H, W) (C = 1 grey, 3 RGB) as uint8
or as float32 in [0, 1], int64 labels 0..K-1 and the class names, split into train and
test. `images.load_images` turns them into an `ImageDataset`; normalising and resizing
come afterwards (`images.preprocess_images`), so every reader stays about pixels only.

Sources (the `source=` of load_images; "auto" picks one by looking at the data root):
- idx: the four idx files of the MNIST distribution (raw or .gz), which Fashion-MNIST,
  KMNIST and EMNIST ship too, in the root or in root/<Name>/raw (torchvision's layout);
- image_folder: root/<class>/*.png|jpg|jpeg|bmp, either under root/train and root/test or
  as one set; class indices follow the sorted folder names;
- npz: arrays x_train, y_train, x_test, y_test (or x, y);
- torchvision: a class of torchvision.datasets (MNIST, FashionMNIST, CIFAR10, ...),
  downloaded into the cache dir;
- hf: Hugging Face datasets, read in `hf.py`.
A set without its own test split is split here: 1/6 of each class goes to test, drawn
with a fixed seed, so that the target network and every run agree on it.
"""
from __future__ import annotations

import gzip
import inspect
import io
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from rledit_ray.errors import UserError, user_file_errors
from rledit_ray.paths import cache_dir

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
HF_FILE_SUFFIXES = (".parquet", ".arrow", ".csv", ".json", ".jsonl")
TEST_FRACTION = 1 / 6
TEST_SPLIT_SEED = 1234


@dataclass
class RawImages:
    x_train: np.ndarray  # (N, C, H, W), uint8 or float32 in [0, 1]
    y_train: np.ndarray  # int64
    x_test: np.ndarray
    y_test: np.ndarray
    classes: tuple[str, ...]
    source: str  # human-readable, recorded in target metadata


# ----------------------------------------------------------------------------- arrays
def image_array(x: np.ndarray, where: str) -> np.ndarray:
    """Images as (N, C, H, W), uint8 or float32 in [0, 1]; anything else is refused."""
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4:
        x = _channels_first(x, where)
    else:
        raise UserError(f"{where} has shape {x.shape}: expected images shaped (N, H, W), "
                        f"(N, H, W, C) or (N, C, H, W)")
    if len(x) == 0:
        raise UserError(f"{where} holds no images")
    if x.dtype.kind in "iu":
        lo, hi = int(x.min()), int(x.max())
        if lo < 0 or hi > 255:
            raise UserError(f"{where} holds integers in [{lo}, {hi}]: expected uint8 pixels 0..255")
        return x.astype(np.uint8, copy=False)
    if x.dtype.kind == "f":
        lo, hi = float(np.min(x)), float(np.max(x))
        if not (0.0 <= lo and hi <= 1.0):  # also false for NaN
            raise UserError(f"{where} holds floats in [{lo:.3g}, {hi:.3g}]: store raw pixels, floats in "
                            f"[0, 1] or uint8 0..255 (undo any normalisation; it is applied later)")
        return x.astype(np.float32, copy=False)
    raise UserError(f"{where} has dtype {x.dtype}: expected uint8 or float pixels")


def _channels_first(x: np.ndarray, where: str) -> np.ndarray:
    first, last = x.shape[1] in (1, 3), x.shape[3] in (1, 3)
    if first and not last:
        return x
    if last and not first:
        return x.transpose(0, 3, 1, 2)
    if first and last:
        raise UserError(f"{where} has shape {x.shape}: cannot tell its channel axis; "
                        f"store it as (N, H, W, C) or (N, C, H, W) with H, W > 3")
    raise UserError(f"{where} has shape {x.shape}: expected 1 (grey) or 3 (RGB) channels")


def encode_labels(values, where: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """Labels as int64 0..K-1 and the class names; strings map to their sorted order."""
    y = np.asarray(values)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise UserError(f"{where} has shape {y.shape}: expected one label per image")
    if y.dtype.kind in "OUS":
        if any(v is None or (isinstance(v, float) and np.isnan(v)) for v in y):
            raise UserError(f"{where} has images without a label: drop them or label them")
        names, y = np.unique([str(v) for v in y], return_inverse=True)
        return y.astype(np.int64), tuple(names)
    if y.dtype.kind == "f" and not (np.isfinite(y).all() and (y == np.round(y)).all()):
        raise UserError(f"{where} holds non-integer labels: expected class indices 0..K-1 or names")
    if y.dtype.kind not in "iufb":
        raise UserError(f"{where} has dtype {y.dtype}: expected class indices 0..K-1 or names")
    y = y.astype(np.int64)
    present = np.unique(y)
    if len(present) and (present[0] < 0 or len(present) != present[-1] + 1):
        missing = sorted(set(range(int(present[-1]) + 1)) - set(present.tolist()))
        reason = f"negative label {present[0]}" if present[0] < 0 else f"no image of class {missing[0]}"
        raise UserError(f"{where} has {reason}: number the classes 0..K-1")
    return y, tuple(str(k) for k in range(len(present)))


def split_off_test(x: np.ndarray, y: np.ndarray, classes, source: str) -> RawImages:
    """A deterministic stratified test split: 1/6 of each class (at least one image of a
    class that has two), keeping file order inside both halves."""
    rng = np.random.default_rng(TEST_SPLIT_SEED)
    is_test = np.zeros(len(y), bool)
    for c in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == c))
        n = int(round(len(rows) * TEST_FRACTION))
        is_test[rows[: max(n, 1) if len(rows) >= 2 else 0]] = True
    return RawImages(x[~is_test], y[~is_test], x[is_test], y[is_test], tuple(classes),
                     f"{source} (test split: 1/6 of each class, seed {TEST_SPLIT_SEED})")


def check_size(size) -> tuple[int, int]:
    if (not isinstance(size, (list, tuple)) or len(size) != 2
            or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size)):
        raise UserError(f"image size must be two positive integers (height, width), got {size!r}")
    return int(size[0]), int(size[1])


def resize(x: torch.Tensor, size) -> torch.Tensor:
    """Float images (N, C, H, W) resized with antialiased bilinear interpolation."""
    size = check_size(size)
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)


# ----------------------------------------------------------------------------- image files
_MODE_NAMES = {1: "greyscale", 3: "RGB"}


class SameShape:
    """Every image of one data set must have the first image's mode and size."""

    def __init__(self):
        self.first: tuple[tuple[int, ...], str] | None = None

    def check(self, pixels: np.ndarray, where: str) -> None:
        if self.first is None:
            self.first = (pixels.shape, where)
            return
        shape, first = self.first
        if pixels.shape[0] != shape[0]:
            raise UserError(f"{where} is {_MODE_NAMES[pixels.shape[0]]} but {first} is "
                            f"{_MODE_NAMES[shape[0]]}: convert the images to one mode")
        if pixels.shape[1:] != shape[1:]:
            raise UserError(f"{where} is {pixels.shape[1]}x{pixels.shape[2]} but {first} is "
                            f"{shape[1]}x{shape[2]}: resize the images to one size or pass size=(H, W)")


def decode_image(file, where: str, same: SameShape, size=None) -> np.ndarray:
    """One image file (a path or bytes) as (C, H, W): uint8, or float32 when resized."""
    from PIL import Image

    with user_file_errors(where, also=(OSError, SyntaxError, ValueError)):
        with Image.open(io.BytesIO(file) if isinstance(file, bytes) else file) as image:
            image.load()
            pixels = _pil_pixels(image, where)
    if size is not None:
        pixels = resize(torch.tensor(pixels)[None].float() / 255.0, size)[0].numpy()
    same.check(pixels, where)
    return pixels


def _pil_pixels(image, where: str) -> np.ndarray:
    if image.mode in ("1", "L", "LA"):
        return np.asarray(image.convert("L"))[None]
    if image.mode in ("RGB", "RGBA", "P", "PA", "CMYK", "YCbCr"):
        return np.asarray(image.convert("RGB")).transpose(2, 0, 1)
    raise UserError(f"{where} has pixel mode {image.mode}: save it as 8-bit greyscale or RGB")


# ----------------------------------------------------------------------------- idx
_IDX_NAME = re.compile(r"(?:.*-)?(train|t10k|test)-(images|labels)[-.]idx[13]-ubyte(?:\.gz)?")


def _idx_folders(root: Path) -> list[Path]:
    return [root, *sorted(p for p in root.glob("*/raw") if p.is_dir())]


def read_idx(path: Path) -> np.ndarray:
    """Read one file in the idx format (Yann LeCun's MNIST distribution format)."""
    with user_file_errors(f"idx file '{path}'"):
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
            raw = f.read()
        if len(raw) < 4 or raw[:3] != b"\0\0\x08":
            raise UserError(f"'{path}' is not an unsigned-byte idx file")
        shape = struct.unpack_from(f">{raw[3]}I", raw, 4)
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * len(shape))
    if data.size != int(np.prod(shape)):
        state = "truncated" if data.size < np.prod(shape) else "longer than its header says"
        raise UserError(f"'{path}' is {state}: expected {int(np.prod(shape))} values, found {data.size}")
    return data.reshape(shape)


def find_idx(root: Path, split: str, kind: str) -> Path:
    """The idx file of one split ("train"/"test") and kind ("images"/"labels")."""
    prefixes = ("train",) if split == "train" else ("t10k", "test")
    found = sorted(p for folder in _idx_folders(root) for p in folder.iterdir()
                   if (m := _IDX_NAME.fullmatch(p.name)) and m[1] in prefixes and m[2] == kind)
    stems = {p.parent / p.name.removesuffix(".gz") for p in found}
    if not found:
        stem = f"{prefixes[0]}-{kind}-idx{3 if kind == 'images' else 1}-ubyte"
        raise UserError(f"missing idx file '{stem}' (or {stem}.gz) in '{root}'")
    if len(stems) > 1:
        raise UserError(f"several {split} {kind} files in '{root}' ({', '.join(p.name for p in found)}): "
                        f"point the data root at a folder with one set")
    return min(found, key=lambda p: p.suffix == ".gz")  # the uncompressed copy when both exist


def load_idx(root: Path) -> RawImages:
    if not root.is_dir():
        raise UserError(f"idx folder '{root}' does not exist")
    parts = {}
    for split in ("train", "test"):
        images, labels = (read_idx(find_idx(root, split, kind)) for kind in ("images", "labels"))
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise UserError(f"the {split} idx files in '{root}' do not match: {images.shape} images, "
                            f"{labels.shape} labels")
        parts[split] = images[:, None], labels
    y, classes = encode_labels(np.concatenate([parts["train"][1], parts["test"][1]]), f"idx labels in '{root}'")
    n = len(parts["train"][1])
    return RawImages(parts["train"][0], y[:n], parts["test"][0], y[n:], classes, f"idx files in {root}")


# ----------------------------------------------------------------------------- image folder
def load_image_folder(root: Path, size=None) -> RawImages:
    """root/<class>/<images>, or root/train/<class> and root/test/<class>."""
    if not root.is_dir():
        raise UserError(f"image folder '{root}' does not exist")
    same = SameShape()  # train and test images must stack into one shape
    train, test = root / "train", root / "test"
    if not (train.is_dir() and test.is_dir()):
        classes = _class_names(root)
        x, y = _read_classes(root, classes, same, size)
        return split_off_test(x, y, classes, f"image folder {root}")
    classes = _class_names(train)
    unknown = sorted(set(_class_names(test)) - set(classes))
    if unknown:
        raise UserError(f"test class folder '{test / unknown[0]}' has no counterpart in '{train}'")
    x_tr, y_tr = _read_classes(train, classes, same, size)
    x_te, y_te = _read_classes(test, classes, same, size)
    return RawImages(x_tr, y_tr, x_te, y_te, classes, f"image folder {root} (train/ and test/)")


def _class_names(folder: Path) -> tuple[str, ...]:
    names = tuple(sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")))
    if not names:
        raise UserError(f"no class sub-folders in '{folder}': put each class's images in "
                        f"'{folder}/<class>/' (or use train/<class> and test/<class>)")
    return names


def _read_classes(folder: Path, classes, same: SameShape, size) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for label, name in enumerate(classes):
        if not (folder / name).is_dir():  # a test folder may lack a class
            continue
        files = sorted(p for p in (folder / name).iterdir()
                       if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise UserError(f"class folder '{folder / name}' holds no {'/'.join(IMAGE_SUFFIXES)} images")
        images += [decode_image(p, f"image '{p}'", same, size) for p in files]
        labels += [label] * len(files)
    return np.stack(images), np.asarray(labels, np.int64)


# ----------------------------------------------------------------------------- npz
_NPZ_SPLIT_KEYS = ("x_train", "y_train", "x_test", "y_test")


def load_npz(path: Path) -> RawImages:
    """x_train, y_train, x_test, y_test (or x, y) arrays in one .npz."""
    with user_file_errors(f"npz file '{path}'", also=(OSError, ValueError)):
        with open(path, "rb") as f:
            magic = f.read(6)
        if magic.startswith(b"\x93NUMPY"):
            raise UserError(f"'{path}' holds a single array: save named arrays with "
                            f"numpy.savez(path, x_train=..., y_train=..., x_test=..., y_test=...)")
        if not magic.startswith(b"PK"):
            raise UserError(f"'{path}' is not a zip archive, as a .npz must be: save it with numpy.savez")
        archive = np.load(path, allow_pickle=False)  # never unpickle a user's file
        with archive:
            keys = set(archive.files)
            wanted = _NPZ_SPLIT_KEYS if keys & set(_NPZ_SPLIT_KEYS) or not keys >= {"x", "y"} else ("x", "y")
            missing = [k for k in wanted if k not in keys]
            if missing:
                raise UserError(f"npz file '{path}' lacks {', '.join(missing)} (it has {', '.join(sorted(keys))}): "
                                f"store x_train, y_train, x_test, y_test or x, y")
            arrays = {k: archive[k] for k in wanted}
    return raw_from_arrays(arrays, f"'{path}'", f"npz file {path}")


def raw_from_arrays(arrays: dict, where: str, source: str) -> RawImages:
    """RawImages from arrays named x_train, y_train, x_test, y_test (or x, y: then split here),
    each checked as `image_array` and `encode_labels` do."""
    xs = {k: image_array(np.asarray(v), f"'{k}' in {where}") for k, v in arrays.items() if k.startswith("x")}
    for k, x in xs.items():
        y = arrays["y" + k[1:]]
        if len(x) != len(y):
            raise UserError(f"'{k}' in {where} has {len(x)} images but 'y{k[1:]}' has {len(y)} labels")
    if len(arrays) == 2:
        y, classes = encode_labels(arrays["y"], f"'y' in {where}")
        return split_off_test(xs["x"], y, classes, source)
    if xs["x_train"].shape[1:] != xs["x_test"].shape[1:]:
        raise UserError(f"'x_train' and 'x_test' in {where} differ in image shape "
                        f"({xs['x_train'].shape[1:]} vs {xs['x_test'].shape[1:]})")
    n = len(arrays["y_train"])
    y, classes = encode_labels(np.concatenate([np.asarray(arrays["y_train"]), np.asarray(arrays["y_test"])]),
                               f"labels in {where}")
    return RawImages(xs["x_train"], y[:n], xs["x_test"], y[n:], classes, source)


# ----------------------------------------------------------------------------- torchvision
def load_torchvision(name: str, root: str | None = None) -> RawImages:
    """A torchvision.datasets class by name (case, '-' and '_' ignored), downloaded into root."""
    try:
        import torchvision.datasets as tv
    except ImportError:
        raise UserError("source 'torchvision' needs torchvision, which is not installed: "
                        "pip install torchvision (or the `vision` extra)") from None
    known = {n.lower().replace("_", ""): n for n in dir(tv) if isinstance(getattr(tv, n), type)}
    cls_name = known.get(name.lower().replace("_", "").replace("-", ""))
    if cls_name is None:
        raise UserError(f"torchvision has no dataset '{name}': try MNIST, FashionMNIST, KMNIST, CIFAR10 or CIFAR100")
    cls, root = getattr(tv, cls_name), root or str(cache_dir() / "torchvision")
    # Most classes take train=True/False; SVHN, STL10 and others name their splits instead.
    by_flag = "train" in inspect.signature(cls).parameters
    with user_file_errors(f"torchvision {cls_name} data in '{root}'", also=(OSError, RuntimeError, ValueError)):
        parts = [cls(root, download=True, **({"train": split == "train"} if by_flag else {"split": split}))
                 for split in ("train", "test")]
    (x_tr, y_tr), (x_te, y_te) = (_torchvision_arrays(p, f"torchvision {cls_name}") for p in parts)
    n = len(y_tr)
    y, classes = encode_labels(np.concatenate([y_tr, y_te]), f"torchvision {cls_name} labels")
    classes = tuple(getattr(parts[0], "classes", None) or classes)
    return RawImages(x_tr, y[:n], x_te, y[n:], classes, f"torchvision {cls_name} in {root}")


def _torchvision_arrays(ds, where: str) -> tuple[np.ndarray, np.ndarray]:
    labels = getattr(ds, "targets", None)
    labels = getattr(ds, "labels", None) if labels is None else labels
    if hasattr(ds, "data") and labels is not None:
        return image_array(np.asarray(ds.data), where), np.asarray(labels)
    same, images, labels = SameShape(), [], []  # datasets that keep only file paths
    for i in range(len(ds)):
        image, label = ds[i]
        images.append(_pil_pixels(image, f"{where} image {i}"))
        same.check(images[-1], f"{where} image {i}")
        labels.append(label)
    return np.stack(images), np.asarray(labels)


# ----------------------------------------------------------------------------- detection
def detect_source(root: Path) -> str:
    """Which reader fits the data root: looks at names only, reads no file."""
    if not root.exists():
        raise UserError(f"data root '{root}' does not exist")
    if root.is_file():
        if root.suffix.lower() == ".npz":
            return "npz"
        if root.suffix.lower() in HF_FILE_SUFFIXES:
            return "hf"
        raise UserError(f"cannot tell the format of '{root}': give a .npz, .parquet, .arrow or .csv "
                        f"file or a folder, or name the source")
    names = {p.name for p in root.iterdir()}
    if "dataset_dict.json" in names or "state.json" in names:
        return "hf"
    if any(_IDX_NAME.fullmatch(p.name) for folder in _idx_folders(root) for p in folder.iterdir()):
        return "idx"
    if any(p.is_dir() and not p.name.startswith(".") for p in root.iterdir()):
        return "image_folder"
    if any(Path(n).suffix.lower() in HF_FILE_SUFFIXES for n in names):
        return "hf"
    raise UserError(f"cannot tell what '{root}' holds: expected idx files, class sub-folders of images, "
                    f"parquet/arrow/csv files or a Hugging Face save_to_disk folder")
