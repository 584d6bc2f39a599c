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

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
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
