"""How a world calls its target, and what every split of it provides (targets/split.py).

`call_model` is the one way to run a target on a batch (packed texts included); `Split` is
the interface the worlds use: `suffix(prefix(x))` is the model's logits on x.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

PACKED_INPUTS = "rledit_packed_inputs"
CHUNK = 4096  # rows per forward pass: bounds the activations' memory on big evaluation pools


def call_model(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Logits of `model` on the batch `x`. A model carrying the attribute PACKED_INPUTS (a tuple of
    names, e.g. ("input_ids", "attention_mask")) takes x packed as (N, len(names), L) int64 and is
    called as model(**{name: x[:, i]}); a result with `.logits` (a transformers ModelOutput) gives
    its logits."""
    names = getattr(model, PACKED_INPUTS, None)
    out = model(**{name: x[:, i] for i, name in enumerate(names)}) if names else model(x)
    return out.logits if hasattr(out, "logits") else out


class Split:
    """How a world evaluates its model: `suffix(prefix(x))` equals `call_model(model, x)` for the
    model's current weights; `prefix` runs once per input set, `suffix` at every step."""

    kind = ""
    sequential_suffix: nn.Sequential | None = None

    def __init__(self, model: nn.Module):
        self.model = model
        self.device = model_device(model)

    def prefix(self, x: torch.Tensor, persist: bool = False) -> Any:
        """What `suffix` takes for the inputs `x`; `persist`: keep it on disk where the split can."""
        raise NotImplementedError

    def suffix(self, cached) -> torch.Tensor:
        raise NotImplementedError

    def rows(self, cached) -> int:
        return len(cached)


def outputs_close(a, b, tol: float) -> bool:
    if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor) or a.shape != b.shape:
        return False
    scale = max(1.0, float(a.detach().abs().max())) if a.numel() else 1.0
    return torch.allclose(a, b, rtol=tol, atol=tol * scale, equal_nan=True)


def model_device(model: nn.Module) -> torch.device:
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")
