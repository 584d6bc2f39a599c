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
