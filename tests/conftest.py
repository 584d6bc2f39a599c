"""Test-session environment: private caches and Ray settings that work offline."""
import os
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


@pytest.fixture(scope="session")
def digits_task():
    """Forget class 3 of scikit-learn's digits, 64 reward samples per set."""
    from rledit_ray.data import load_dataset, unlearning_splits
    from rledit_ray.tasks import UnlearningTask

    return UnlearningTask(unlearning_splits(load_dataset("digits"), [3]), samples_per_set=64, seed=0)


class TinyCNN(nn.Module):
    """A target that is not an nn.Sequential, for 8x8 digits: nested Sequentials and a reshape
    in forward, the way third-party CNNs are often written."""

    def __init__(self):
        super().__init__()
        self.conv_layers = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.fc_layers = nn.Sequential(nn.Linear(128, 32), nn.ReLU(), nn.Linear(32, 10))

    def forward(self, x):
        x = self.conv_layers(x)
        return self.fc_layers(x.view(x.size(0), -1))


@pytest.fixture
def tiny_cnn():
    """A fresh TinyCNN, seeded (random weights are enough to compare evaluation paths)."""
    torch.manual_seed(0)
    return TinyCNN().eval().requires_grad_(False)
