"""Test-session environment: private caches and Ray settings that work offline."""
import os
import tempfile

import pytest

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
