"""Hugging Face `datasets` as a data source: images (load_images, source "hf") and text
tables (load_text_table).

What `path_or_name` may be:
- a folder written by `save_to_disk`: a DatasetDict (its splits) or a single Dataset;
- data files: one .parquet/.arrow/.csv/.json(l) file, or a folder of them (or of data/):
  files named train*, test* and validation* are those splits, otherwise all are one set;
- a hub name ("owner/name"), only where the caller allows it: it is the one source that
  reaches the network, so it is never guessed, but no offline flag is set either.
Images come from an Image feature (decoded here with PIL, so that a broken row is named)
or from an array column; labels from a ClassLabel feature, ints 0..K-1 or strings.
"""
from __future__ import annotations

import re
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from rledit_ray.data.sources import (
    HF_FILE_SUFFIXES,
    RawImages,
    SameShape,
    decode_image,
    encode_labels,
    image_array,
    split_off_test,
)
from rledit_ray.errors import UserError, user_file_errors

IMAGE_COLUMNS = ("image", "img")  # the names hub image datasets use
LABEL_COLUMNS = ("label",)
TEST_SPLITS = ("test", "validation", "valid", "val")  # the first one present is the test split
_SPLIT_NAME = re.compile(r"(train|test|validation|valid|val)(?=[-_.\d]|$)")


def open_hf(path_or_name: str, allow_hub: bool = False) -> tuple[dict, str]:
    """The splits of a Hugging Face dataset as {name: Dataset}, and where they came from."""
    import datasets

    path = Path(path_or_name)
    if not path.exists() and not allow_hub:
        raise UserError(f"'{path}' does not exist (a Hugging Face hub name needs the source 'hf')")
    with _errors_unlogged(), user_file_errors(f"Hugging Face dataset '{path_or_name}'", also=(OSError, ValueError)):
        if path.is_dir() and any((path / f).exists() for f in ("dataset_dict.json", "state.json")):
            loaded, source = datasets.load_from_disk(str(path)), f"Hugging Face save_to_disk folder {path}"
        elif path.exists():
            builder, files = _data_files(path)
            loaded, source = datasets.load_dataset(builder, data_files=files), f"{builder} files in {path}"
        else:
            loaded, source = datasets.load_dataset(path_or_name), f"Hugging Face hub dataset {path_or_name}"
    splits = dict(loaded) if isinstance(loaded, datasets.DatasetDict) else {"all": loaded}
    if not splits or all(len(s) == 0 for s in splits.values()):
        raise UserError(f"Hugging Face dataset '{path_or_name}' has no rows")
    return splits, source


@contextmanager
def _errors_unlogged():
    """datasets logs some failures before raising them, and draws progress bars on stderr
    ("Generating train split") even for a file it then refuses; raised, they become our one line."""
    import datasets

    before, bars = datasets.logging.get_verbosity(), not datasets.are_progress_bars_disabled()
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        datasets.logging.set_verbosity(before)
        if bars:
            datasets.enable_progress_bars()


def _data_files(path: Path) -> tuple[str, dict[str, list[str]]]:
    if path.is_file():
        files = [path] if path.suffix.lower() in HF_FILE_SUFFIXES else []
    else:  # the hub's own layout keeps them under data/
        files = sorted(f for folder in (path, path / "data") if folder.is_dir() for f in folder.iterdir()
                       if f.is_file() and f.suffix.lower() in HF_FILE_SUFFIXES)
    if not files:
        raise UserError(f"no {'/'.join(HF_FILE_SUFFIXES)} files in '{path}'")
    builders = {"json" if f.suffix.lower() == ".jsonl" else f.suffix.lower()[1:] for f in files}
    for f in files:  # a text format holding NULs is a binary file misnamed (datasets would read it as columns)
        if f.suffix.lower() in (".csv", ".json", ".jsonl") and b"\0" in f.read_bytes()[: 1 << 16]:
            raise UserError(f"'{f}' is binary, not {f.suffix[1:]} text: give the file in its own format")
    if len(builders) > 1:
        raise UserError(f"'{path}' mixes {', '.join(sorted(builders))} files: keep one format")
    named = {f: m[1] if (m := _SPLIT_NAME.match(f.name.lower())) else None for f in files}
    if "train" not in named.values():
        return builders.pop(), {"train": [str(f) for f in files]}
    unnamed = [f for f, split in named.items() if split is None]
    if unnamed:
        raise UserError(f"'{unnamed[0]}' is not named train*, test* or validation*: rename it or move it out")
    splits: dict[str, list[str]] = {}
    for f, split in named.items():
        splits.setdefault(split, []).append(str(f))
    return builders.pop(), splits


def hf_rows(path_or_name: str, allow_hub: bool = False):
    """Every row of every split as one Dataset (the text task makes its own splits)."""
    import datasets

    splits, source = open_hf(path_or_name, allow_hub)
    with user_file_errors(f"Hugging Face dataset '{path_or_name}'", also=(ValueError,)):
        return datasets.concatenate_datasets(list(splits.values())), source


# ----------------------------------------------------------------------------- images
def load_hf_images(path_or_name: str, columns: dict | None = None, allow_hub: bool = False,
                   size=None) -> RawImages:
    import datasets

    splits, source = open_hf(path_or_name, allow_hub)
    where = f"'{path_or_name}'"
    train, test = _train_and_test(splits, where)
    parts = [train] if test is None else [train, test]
    image_col = _column(parts, columns, "image", IMAGE_COLUMNS, where)
    label_col = _column(parts, columns, "label", LABEL_COLUMNS, where)
    same = SameShape()  # train and test images must stack into one shape
    xs = [_pixels(part, image_col, where, same, size) for part in parts]
    if size is None and len(xs) == 2 and xs[0].shape[1:] != xs[1].shape[1:]:  # array columns
        raise UserError(f"train and test images of {where} differ in shape "
                        f"({xs[0].shape[1:]} vs {xs[1].shape[1:]}): resize them or pass size=(H, W)")
    raw_labels = [part.with_format("numpy")[label_col] for part in parts]
    feature = train.features[label_col]
    if isinstance(feature, datasets.ClassLabel):
        y, classes = np.concatenate(raw_labels).astype(np.int64), tuple(feature.names)
        if (y < 0).any():
            raise UserError(f"column '{label_col}' of {where} has rows without a label: drop or label them")
    else:
        y, classes = encode_labels(np.concatenate(raw_labels), f"column '{label_col}' of {where}")
    if test is None:
        return split_off_test(xs[0], y, classes, source)
    n = len(xs[0])
    return RawImages(xs[0], y[:n], xs[1], y[n:], classes, source)


def _train_and_test(splits: dict, where: str):
    if len(splits) == 1:
        return next(iter(splits.values())), None
    if "train" not in splits:
        raise UserError(f"{where} has splits {', '.join(splits)}: expected 'train' and 'test' (or one split)")
    return splits["train"], next((splits[k] for k in TEST_SPLITS if k in splits), None)


def _column(parts, columns: dict | None, role: str, defaults: tuple[str, ...], where: str) -> str:
    unknown = sorted(set(columns or {}) - {"image", "label"})
    if unknown:
        raise UserError(f"unknown column role '{unknown[0]}' for images: use 'image' and 'label'")
    present = parts[0].column_names
    names = (columns[role],) if columns and role in columns else defaults
    for name in names:
        if all(name in p.column_names for p in parts):
            return name
    wanted = " or ".join(f"'{n}'" for n in names)
    raise UserError(f"{where} has no {role} column {wanted} (columns: {', '.join(present)}): "
                    f"name it with columns={{'{role}': ...}}")


def _pixels(ds, column: str, where: str, same: SameShape, size) -> np.ndarray:
    import datasets

    if not isinstance(ds.features[column], datasets.Image):
        return image_array(np.asarray(ds.with_format("numpy")[column]), f"column '{column}' of {where}")
    images = []
    # Undecoded, so that PIL's error on a broken row can name that row.
    for i, value in enumerate(ds.cast_column(column, datasets.Image(decode=False))[column]):
        row = f"row {i} of column '{column}' in {where}"
        if value is None or (value.get("bytes") is None and not value.get("path")):
            raise UserError(f"{row} has no image: drop the row or fill it")
        images.append(decode_image(value["bytes"] if value.get("bytes") is not None else value["path"],
                                   row, same, size))
    return np.stack(images)
