import numpy as np
import pytest
import torch

from rledit_ray.data import load_dataset, pools, read_idx, unlearning_splits
from rledit_ray.data.images import load_mnist
from rledit_ray.errors import UserError


def test_idx_folder_loader_reads_standard_files(tmp_path, write_idx):
    rng = np.random.default_rng(0)
    train_x, test_x = rng.integers(0, 256, (20, 28, 28)), rng.integers(0, 256, (6, 28, 28))
    train_y, test_y = np.arange(20) % 10, np.arange(6) % 10
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", train_x, gz=True)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", train_y, gz=True)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", test_x)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", test_y)
    raw = load_mnist(root=str(tmp_path))  # raw pixels in [0, 1]
    assert raw.x_train.shape == (20, 1, 28, 28) and raw.x_test.shape == (6, 1, 28, 28)
    assert raw.y_train.tolist() == train_y.tolist()
    assert torch.equal((raw.x_test.squeeze(1) * 255).round(), torch.tensor(test_x, dtype=torch.float32))
    # load_dataset normalises, invertibly back to the raw bytes
    ds = load_dataset("mnist", root=str(tmp_path))
    back = (ds.x_test * 0.3081 + 0.1307) * 255
    assert torch.allclose(back.squeeze(1), torch.tensor(test_x, dtype=torch.float32), atol=1e-3)


def test_idx_loader_names_missing_file(tmp_path):
    with pytest.raises(UserError, match="train-images-idx3-ubyte"):
        load_mnist(root=str(tmp_path))


def test_truncated_idx_is_refused(tmp_path):
    path = tmp_path / "x"
    path.write_bytes(bytes([0, 0, 8, 1]) + (10).to_bytes(4, "big") + b"abc")
    with pytest.raises(UserError, match="truncated"):
        read_idx(path)


def test_mnist_from_the_offline_wheel_is_the_full_dataset():
    ds = load_dataset("mnist")
    assert ds.x_train.shape == (60000, 1, 28, 28) and ds.x_test.shape == (10000, 1, 28, 28)
    assert sorted(ds.y_test.unique().tolist()) == list(range(10))


def test_splits_are_disjoint_and_cover_the_classes():
    ds = load_dataset("digits")
    p = pools(ds)
    assert len(p.fit) + len(p.validation) == len(ds.y_train)
    s = unlearning_splits(ds, [3])
    assert set(s.forget_train.y.tolist()) == {3} and 3 not in s.retain_train.y.tolist()
    assert set(s.forget_test.y.tolist()) == {3} and 3 not in s.retain_test.y.tolist()
    assert len(s.forget_val) > 0 and len(s.retain_val) > 0


@pytest.mark.parametrize("bad", [[10], [-1], list(range(10)), []])
def test_bad_forget_classes_are_refused(bad):
    with pytest.raises(UserError):
        unlearning_splits(load_dataset("digits"), bad)


def test_unknown_dataset_is_refused():
    with pytest.raises(UserError, match="unknown dataset 'cifar'"):
        load_dataset("cifar")
