"""Content fingerprints: what every cache and every cross-process check is keyed by.

A cache keyed by a name serves stale results the day the data behind the name changes (an
idx folder of another dataset under the name "mnist" once got MNIST's cached CNN, 15%
accurate). Here the key is a hash of the bytes themselves: tensors, arrays, and the text of
recipes and settings. `cached_model` is the one cache of trained networks built on it.
"""
from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)
# Threads a cached artefact (a trained network, a pool's activations) is computed with. CPU
# results are bit-reproducible at a fixed thread count but not across counts, and callers differ:
# `rledit train` runs at 1 thread, a sweep's driver at the machine's default. Measured: the MNIST
# CNN trained at 1 thread and at 2 threads differed, so whichever process filled the cache first
# decided every later result (an unlearning run moved from 0.29% to 0.10% forget). 2 reproduces
# the network the docs' tables were made with.
BUILD_THREADS = 2


def fingerprint(*parts, length: int = 16) -> str:
    """Hex digest of tensors, arrays, bytes and JSON-able values, in order."""
    digest = hashlib.blake2b(digest_size=32)
    for part in parts:
        if isinstance(part, torch.Tensor):
            part = part.detach().cpu().contiguous()
            digest.update(f"tensor{tuple(part.shape)}{part.dtype}".encode())
            # bfloat16 and friends have no numpy twin: hash their raw bytes via a byte view.
            # (hashed in place: a copy of a 200 MB evaluation pool costs as much as hashing it)
            digest.update(part.reshape(-1).view(torch.uint8).numpy() if part.numel() else b"")
        elif isinstance(part, np.ndarray):
            part = np.ascontiguousarray(part)
            digest.update(f"array{part.shape}{part.dtype}".encode())
            digest.update(part.reshape(-1).view(np.uint8) if part.size else b"")
        elif isinstance(part, bytes):
            digest.update(part)
        else:
            digest.update(json.dumps(part, sort_keys=True, default=str).encode())
        digest.update(b"\0")
    return digest.hexdigest()[:length]


def state_fingerprint(model: nn.Module) -> str:
    """Fingerprint of a model's weights (names, shapes and values of its state dict)."""
    state = model.state_dict()
    return fingerprint(*[item for key in sorted(state) for item in (key, state[key])])


@contextmanager
def build_threads():
    """Run the block at BUILD_THREADS intra-op threads, restoring the caller's count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(BUILD_THREADS)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def cached_model(name: str, key: str, make: Callable[[], nn.Module],
                 build: Callable[[], tuple[nn.Module, dict]]) -> tuple[nn.Module, dict]:
    """The network cached as `targets/<name>-<key>.safetensors` (+ `.json` metadata), loaded into
    `make()` when its metadata carries the same `key` (a content fingerprint); otherwise
    `build()` trains one at BUILD_THREADS threads, saved with `cache_key` in its metadata."""
    from safetensors.torch import load_file

    from rledit_ray.atomic import save_weights
    from rledit_ray.paths import cache_dir

    stem = cache_dir() / "targets" / f"{name}-{key}"
    weights, meta_path = stem.with_suffix(".safetensors"), stem.with_suffix(".json")
    if meta_path.exists() and weights.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("cache_key") == key:
            model = make()
            model.load_state_dict(load_file(str(weights)))
            return model.eval(), meta
        log.info("cached %s has another key: training it again", weights.name)
    with build_threads():
        model, meta = build()
    meta = {**meta, "cache_key": key, "train_threads": BUILD_THREADS}
    save_weights(model, weights, meta)
    return model.eval(), meta


def cached_tensor(kind: str, key: str, compute: Callable[[], torch.Tensor], max_bytes: int | None = None) -> torch.Tensor:
    """The tensor cached as `<kind>/<key>.safetensors` (a CPU tensor), else `compute()`'s result,
    saved there atomically unless it is over `max_bytes`; computed at BUILD_THREADS threads. `key`
    must be a fingerprint of everything the tensor is a function of (BUILD_THREADS included): a
    file that does not hold exactly one tensor named `key` is computed again."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from rledit_ray.atomic import save_safetensors
    from rledit_ray.paths import cache_dir

    path = cache_dir() / kind / f"{key}.safetensors"
    if path.exists():
        try:
            stored = load_file(str(path))
            if list(stored) == [key]:
                return stored[key]
        except (SafetensorError, OSError, ValueError):
            pass
        log.info("cached %s is unreadable: computing it again", path.name)
    with build_threads():
        value = compute()
    if max_bytes is not None and value.numel() * value.element_size() > max_bytes:
        return value
    path.parent.mkdir(parents=True, exist_ok=True)
    save_safetensors({key: value.detach().cpu().contiguous()}, path)
    return value
