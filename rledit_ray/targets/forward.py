"""How a world calls its target, and what every split of it provides (targets/split.py).

`call_model` is the one way to run a target on a batch (packed texts included); `Split` is
the interface the worlds use: `suffix(prefix(x))` is the model's logits on x. `LowRankEdit`
describes an additive low-rank edit of one Linear layer, which a split that can (the memo
split) evaluates without the layer's full matrix product.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
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


@dataclass
class LowRankEdit:
    """Linear layer `name` holds [W | b] = [W0 | b0] + A B^T (B's last row is the bias column
    when the bias is edited): its output is its original output plus (x B_w + B_b) A^T. With
    R columns in A and B that costs R (m + n) per row of x instead of m n, once the original
    output of each input set is cached. With a `basis` (n x k, or n + 1 x k: factor bases,
    worlds/bases.py), B = basis @ b for the (k x R) coefficients b, and x's projection on the
    basis can be cached too: the step then reads k values per row instead of n. `key` and
    `basis_key` name W0's, b0's and the basis's content, so a cached output never answers for
    other weights. The layer must be the only edited one: its input, and so what is cached from
    it, must be the same at every step. The cached outputs sit beside the split's records,
    outside its memory budget (m values per row of an input set: a quarter of what MiniLM's FFN
    output layer already keeps of its input)."""

    name: str
    weight: torch.Tensor  # W0, (m, n)
    bias: torch.Tensor | None  # b0, (m,)
    a: torch.Tensor  # (m, R)
    b: torch.Tensor  # (n, R) or (n + 1, R) with the bias column; (k, R) with a basis
    key: str
    basis: torch.Tensor | None = None
    basis_key: str = ""

    def original_output(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """x (with the bias column's 1) on the basis: (..., k)."""
        return _times(x, self.basis, self.weight.shape[1])

    def coefficients(self, x: torch.Tensor, projected: torch.Tensor | None = None) -> torch.Tensor:
        """The R coefficients of each row: (..., R); the layer's output moves by them @ a.T."""
        return _times(x, self.b, self.weight.shape[1]) if projected is None else projected @ self.b

    def output(self, x: torch.Tensor, original: torch.Tensor, projected: torch.Tensor | None = None) -> torch.Tensor:
        return original + self.coefficients(x, projected) @ self.a.T


def _times(x: torch.Tensor, matrix: torch.Tensor, n: int) -> torch.Tensor:
    """[x, 1] @ matrix when matrix has the bias column's row (n + 1 rows), else x @ matrix."""
    out = x @ matrix[:n]
    return out + matrix[n] if len(matrix) > n else out


class Split:
    """How a world evaluates its model: `suffix(prefix(x))` equals `call_model(model, x)` for the
    model's current weights; `prefix` runs once per input set, `suffix` at every step. A split
    with `low_rank` set also takes `suffix(cached, edit)`, a LowRankEdit the model's weights
    already hold, and computes the edited layer from it."""

    kind = ""
    sequential_suffix: nn.Sequential | None = None
    low_rank = False

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
