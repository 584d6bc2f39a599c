"""Content fingerprints: what every cache and every cross-process check is keyed by.

A cache keyed by a name serves stale results the day the data behind the name changes (an
idx folder of another dataset under the name "mnist" once got MNIST's cached CNN, 15%
accurate). Here the key is a hash of the bytes themselves: tensors, arrays, and the text of
recipes and settings.
"""
from __future__ import annotations

import hashlib
import json

import numpy as np
import torch
from torch import nn


def fingerprint(*parts, length: int = 16) -> str:
    """Hex digest of tensors, arrays, bytes and JSON-able values, in order."""
    digest = hashlib.blake2b(digest_size=32)
    for part in parts:
        if isinstance(part, torch.Tensor):
            part = part.detach().cpu().contiguous()
            digest.update(f"tensor{tuple(part.shape)}{part.dtype}".encode())
            # bfloat16 and friends have no numpy twin: hash their raw bytes via a byte view.
            digest.update(part.view(torch.uint8).numpy().tobytes() if part.numel() else b"")
        elif isinstance(part, np.ndarray):
            part = np.ascontiguousarray(part)
            digest.update(f"array{part.shape}{part.dtype}".encode())
            digest.update(part.tobytes())
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
