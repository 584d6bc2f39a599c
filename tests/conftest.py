"""Test-session environment: private caches and Ray settings that work offline."""
import os
import sys
import tempfile

import pytest
import torch
from torch import nn

_SESSION_HOME = tempfile.mkdtemp(prefix="rledit-tests-")
# Set before anything imports Ray or rledit_ray, so worker processes inherit them.
os.environ.setdefault("RLEDIT_CACHE_DIR", os.path.join(_SESSION_HOME, "cache"))
os.environ["HOME"] = _SESSION_HOME  # keeps ~/ray_results out of the real home
os.environ["RAY_AUTH_MODE"] = "disabled"
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"


@pytest.fixture(scope="session")
def ray_local():
    """One small local Ray for every test that needs a cluster."""
    import ray

    if not ray.is_initialized():  # address="local": never a `ray start` cluster of this machine (connect.py)
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
                 object_store_memory=200 * 2**20, _node_ip_address="127.0.0.2")
    yield ray
    ray.shutdown()


# A digits edit that trains in seconds: the settings end-to-end tests share.
FAST_DIGITS = {
    "dataset": "digits",
    "forget_classes": [3],
    "samples": {"per_set": 64},
    "agent": {"train_batch_size": 200, "minibatch_size": 50, "num_epochs": 4},
    "training": {"iterations": 3},
}


# The other fast configs end-to-end tests share: a bias edit, a generalist editor (trained on
# digits classes 0-6, held out 7-9), a job for the 2-node local cluster.
FAST_BIAS = {"task": "bias", "samples": {"per_set": 32},
             "agent": {"train_batch_size": 200, "minibatch_size": 50, "num_epochs": 2},
             "training": {"iterations": 2}}
GENERALIST_TRAIN = [0, 1, 2, 3, 4, 5, 6]
FAST_GENERALIST = {
    "dataset": "digits",
    "samples": {"per_set": 32},
    "generalist": {"train_classes": GENERALIST_TRAIN, "heldout_classes": [7, 8, 9]},
    "agent": {"train_batch_size": 100, "minibatch_size": 50, "num_epochs": 2},
    "training": {"iterations": 1},
}
FAST_JOB = {**FAST_DIGITS, "agent": {"train_batch_size": 200, "minibatch_size": 100, "num_epochs": 2},
            "training": {"iterations": 2}}


@pytest.fixture(scope="session")
def digits_target():
    """scikit-learn's digits and the project's CNN trained on them (cached by content). Shared
    by the whole session: deepcopy the model before editing it."""
    from rledit_ray.data import load_dataset
    from rledit_ray.targets import load_target

    ds = load_dataset("digits")
    return ds, load_target(ds)[0]


@pytest.fixture
def fast_digits():
    import copy

    return copy.deepcopy(FAST_DIGITS)


@pytest.fixture(scope="session")
def third_party_digits(tmp_path_factory):
    """TinyCNN in a file of its own, as a user's model is, with weights trained on digits
    (safetensors)."""
    import importlib.util
    import inspect

    import torch
    from safetensors.torch import save_file

    from rledit_ray.data import load_dataset
    from rledit_ray.targets.train import Recipe, train_classifier

    root = tmp_path_factory.mktemp("third_party")
    (root / "tiny_cnn.py").write_text("import torch.nn as nn\n\n\n" + inspect.getsource(TinyCNN))
    spec = importlib.util.spec_from_file_location("tiny_cnn_for_weights", root / "tiny_cnn.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # so that a test can pickle the whole module, as users do by mistake
    spec.loader.exec_module(module)
    torch.manual_seed(0)
    model = module.TinyCNN()
    ds = load_dataset("digits")
    train_classifier(model, ds.x_train, ds.y_train, Recipe(epochs=15, batch_size=64))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(root / "tiny_cnn.safetensors"))
    return {"file": root / "tiny_cnn.py", "weights": root / "tiny_cnn.safetensors", "model": model.eval()}


@pytest.fixture(scope="session")
def digits_task():
    """Forget class 3 of scikit-learn's digits, 64 reward samples per set."""
    from rledit_ray.data import load_dataset, unlearning_splits
    from rledit_ray.tasks import UnlearningTask

    return UnlearningTask(unlearning_splits(load_dataset("digits"), [3]), samples_per_set=64, seed=0)


class TinyCNN(nn.Module):
    """A target that is not an nn.Sequential, for 8x8 digits: nested Sequentials and a reshape
    in forward, the way third-party CNNs are often written."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.conv_layers = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.fc_layers = nn.Sequential(nn.Linear(128, 32), nn.ReLU(), nn.Linear(32, num_classes))

    def forward(self, x):
        x = self.conv_layers(x)
        return self.fc_layers(x.view(x.size(0), -1))


@pytest.fixture
def tiny_cnn():
    """A fresh TinyCNN, seeded (random weights are enough to compare evaluation paths)."""
    torch.manual_seed(0)
    return TinyCNN().eval().requires_grad_(False)


# ----------------------------------------------------------------------------- user data
@pytest.fixture
def write_idx():
    """Writes an array as an idx file (the MNIST distribution format), gzipped on request."""
    import gzip

    import numpy as np

    def write(path, array, gz=False):
        array = np.asarray(array)
        header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
        with (gzip.open if gz else open)(path, "wb") as f:
            f.write(header + array.astype(np.uint8).tobytes())
        return path

    return write


@pytest.fixture
def write_images():
    """Writes `count` random PNGs per class under folder/<class>/ and returns their pixels
    as {class: [uint8 arrays]} (PNG is lossless, so loaders must give them back exactly)."""
    import numpy as np
    from PIL import Image

    def write(folder, counts: dict, size=(5, 4), mode="L", seed=0):
        rng = np.random.default_rng(seed)
        written = {}
        for name, count in counts.items():
            (folder / name).mkdir(parents=True, exist_ok=True)
            shape = size if mode == "L" else (*size, 3)
            written[name] = [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(count)]
            for i, pixels in enumerate(written[name]):
                Image.fromarray(pixels, "L" if mode == "L" else "RGB").save(folder / name / f"{i:03d}.png")
        return written

    return write


# ----------------------------------------------------------------------------- finished runs
# The smallest runs that are still real `rledit train` runs: one PPO iteration each.
TINY_RUN = {**FAST_DIGITS, "agent": {"train_batch_size": 100, "minibatch_size": 50, "num_epochs": 1},
            "training": {"iterations": 1}}
TINY_GENERALIST = {**FAST_GENERALIST, "agent": {"train_batch_size": 100, "minibatch_size": 50, "num_epochs": 1}}


@pytest.fixture(scope="session")
def finished_runs(tmp_path_factory, ray_local):
    """Runs trained once per session (~30 s) for tests that need one: `run` (digits, forget 3),
    `gen` (a generalist) and copies of `run` as a user may find them: `interrupted` (killed
    before metrics.json), `damaged` (a checkpoint file overwritten) and `partial` (a checkpoint
    folder missing). Tests must leave them as they are (test_bad_inputs.py checks it)."""
    import shutil
    from types import SimpleNamespace

    from rledit_ray.config import build_config
    from rledit_ray.training import train

    root = tmp_path_factory.mktemp("finished")
    for name, cfg in (("run", TINY_RUN), ("gen", TINY_GENERALIST)):
        train(build_config(cfg), root / name, progress=lambda line: None)
    for name in ("interrupted", "damaged", "partial"):
        shutil.copytree(root / "run", root / name)
    (root / "interrupted" / "metrics.json").unlink()
    module_state = max((root / "damaged" / "checkpoint").rglob("module_state.pkl"), key=lambda p: len(p.parts))
    module_state.write_bytes(b"\x80\x04 not a pickle any more")
    shutil.rmtree(root / "partial" / "checkpoint" / "learner_group")
    return SimpleNamespace(root=root, **{n: root / n for n in ("run", "gen", "interrupted", "damaged", "partial")})


# ----------------------------------------------------------------------------- refusals
def tree_digest(root) -> dict:
    """{relative path: sha256} of every file below `root`: equal before and after a refused
    command means nothing was written, replaced or deleted there."""
    import hashlib
    from pathlib import Path

    root = Path(root)
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def refused(capsys, argv, expected: str) -> str:
    """Run the CLI in this process; assert what a user must see for a mistake: exit status 2,
    exactly one line on stderr (naming `expected`), no traceback. Returns the line."""
    from rledit_ray.cli import main

    rc = main([str(a) for a in argv])
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert rc == 2, captured
    assert "Traceback" not in captured.err and len(lines) == 1, captured.err
    assert lines[0].startswith("rledit: error: ") and expected in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="session")
def bad_places(tmp_path_factory, finished_runs):
    """Damaged and misleading user files, written once: YAML that is not UTF-8, truncated or
    fake weights, idx/gzip/npz/CSV files that are broken in the ways downloads and editors
    break them, a file where a folder is expected, unfinished runs whose checkpoints cannot be
    resumed, and a finished comparison (`rledit compare --methods original`)."""
    import gzip
    import shutil
    from types import SimpleNamespace

    import numpy as np

    from rledit_ray.cli import main

    root = tmp_path_factory.mktemp("bad")
    good_weights = (finished_runs.run / "edited_weights.safetensors").read_bytes()
    files = {
        "latin1.yaml": "seed: 1  # café\n".encode("latin-1"), "binary.yaml": b"\x00\xff\xfe\x89PNG\r\n",
        "list.yaml": b"- 1\n- 2\n", "broken.yaml": b"seed: [1, 2\n", "unknown.yaml": b"sede: 1\n",
        "badtype.yaml": b"samples: {per_set: many}\n",
        "corrupt.safetensors": b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}",
        "truncated.safetensors": good_weights[:300], "empty.safetensors": b"",
        "body_cut.safetensors": good_weights[:8 + int.from_bytes(good_weights[:8], "little") + 100],
        "huge_header.safetensors": (10**15).to_bytes(8, "little") + b"{}",
        "garbage.pt": bytes(range(256)) * 2, "empty.pt": b"", "file": b"not a folder",
        "empty.csv": b"", "binary.csv": b"\x00\x01\x02" * 500, "header_only.csv": b"comment_text,target,male\n",
        "notzip.npz": b"PK\x03\x04garbage", "array.npz": b"\x93NUMPY\x01\x00garbage",
        "bad.parquet": b"PAR1garbagegarbage", "bad.arrow": b"garbage arrow", "bad.jsonl": b'{"a": 1,\n',
    }
    for name, data in files.items():
        (root / name).write_bytes(data)

    def idx_folder(name: str, damage) -> None:
        """The four idx files of a tiny set (as `write_idx` writes them), one then broken by `damage`."""
        folder = root / name
        folder.mkdir()
        for file, a in (("train-images-idx3-ubyte", np.zeros((20, 8, 8))), ("train-labels-idx1-ubyte", np.arange(20) % 10),
                        ("t10k-images-idx3-ubyte", np.zeros((10, 8, 8))), ("t10k-labels-idx1-ubyte", np.arange(10) % 10)):
            header = bytes([0, 0, 8, a.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in a.shape)
            (folder / file).write_bytes(header + a.astype(np.uint8).tobytes())
        damage(folder / "train-images-idx3-ubyte")

    def cut(n):
        return lambda f: f.write_bytes(f.read_bytes()[:n])

    idx_folder("idx_header", cut(6))  # the shape's bytes cut off
    idx_folder("idx_body", cut(100))  # images missing
    idx_folder("idx_notgz", lambda f: f.rename(f.with_name(f.name + ".gz")))  # named .gz, never compressed
    idx_folder("idx_gzcut", lambda f: (f.with_name(f.name + ".gz").write_bytes(gzip.compress(f.read_bytes())[:-10]),
                                       f.unlink()))  # a download cut short
    (root / "images" / "a").mkdir(parents=True)
    (root / "images" / "b").mkdir()
    (root / "images" / "a" / "0.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (root / "images" / "b" / "0.png").write_bytes(b"not an image")

    for name in ("resume_damaged", "resume_partial", "resume_state", "resume_early"):
        shutil.copytree(finished_runs.interrupted, root / name)
    shutil.copytree(finished_runs.damaged / "checkpoint", root / "resume_damaged" / "checkpoint", dirs_exist_ok=True)
    shutil.rmtree(root / "resume_partial" / "checkpoint" / "learner_group")
    (root / "resume_state" / "checkpoint" / "rledit_state.json").write_text("{not json")
    shutil.rmtree(root / "resume_early" / "checkpoint")

    assert main(["compare", "--dataset", "digits", "--forget-class", "3", "--methods", "original", "--seeds", "1",
                 "--out", str(root / "comparison")]) == 0
    return SimpleNamespace(root=root, **{p.name.replace(".", "_"): p for p in root.iterdir()})


@pytest.fixture
def places(finished_runs, bad_places, tmp_path, ray_local):
    """Every place a bad-input case names: the shared runs (finished_runs), the bad files
    (bad_places, as .bad), a fresh folder (.tmp) and a path in it that must stay absent (.new).
    After the test, every file of the shared runs and bad files is byte-identical."""
    from types import SimpleNamespace

    roots = (finished_runs.root, bad_places.root)
    before = [tree_digest(root) for root in roots]
    yield SimpleNamespace(**vars(finished_runs), bad=bad_places, tmp=tmp_path, new=tmp_path / "new")
    assert [tree_digest(root) for root in roots] == before, "a refused command changed a file it must not touch"
