"""Factor bases: an action as coefficients of a few directions, not of every row and column.

With `factor_basis: k`, a layer's factors are U = B_u a_u and V = B_v a_v, with a_u and a_v
(k x r) the action's values. B_u (rows x k) holds the top-k left singular vectors of the
layer's original matrix: the output directions the layer already writes. B_v (cols x k) holds
the top-k principal directions of what enters the layer on the reward samples (with the
constant 1 the bias column multiplies): the input directions the data actually uses. Both
are scaled by sqrt(size / k), so action entries of order 1 give factor entries of order 1 as
they do without a basis, and a step size keeps its meaning. The action shrinks from
r (rows + cols) to 2 r k values, which is what an ES search needs on a wide layer (agent/es.py;
measured on MiniLM's FFN output in docs/deep-edits.md).

`factor_basis: [k_out, k_in]` sizes the two sides apart (r (k_out + k_in) values), 0 keeping
a side's every coordinate (an identity basis). A wide layer's edit can need far more input
directions than output ones: on MiniLM's FFN output (384 x 1536) the input side is what a
64-direction basis loses (docs/deep-edits.md).

V starts away from zero: V = B_v (a_v + C), with C (k x r) a fixed draw of std 0.5. At U = V = 0
the edit U V^T is a saddle: every first-order change of it is zero, and antithetic ES
candidates (+e, -e) even give the same edit, so the search would never leave it. The plain
factors avoid it the same way (V = (a_v + 1) / 2 is 1/2 at a_v = 0). A zero action is still
no edit, since U = 0.

Signs are fixed (each direction's largest entry positive), so every process that builds the
same world from the same data gets the same bases and a saved policy replays its edit.
"""
from __future__ import annotations

import torch
from torch import nn

from rledit_ray.errors import UserError

V_START_STD = 0.5


def basis_sizes(factor_basis: int | tuple[int, int]) -> tuple[int, int]:
    """`factor_basis` as (output directions, input directions); 0 on a side: no basis there."""
    return (factor_basis, factor_basis) if isinstance(factor_basis, int) else tuple(factor_basis)


def factor_bases(model: nn.Module, layers, originals: list[torch.Tensor], factor_basis, run_reward,
                 rank: int) -> list[tuple]:
    """(B_u, B_v, V_0 = B_v C) per edited layer. `run_reward()` runs the network on the reward samples once
    (the world's suffix), during which each layer's inputs are gathered."""
    k_out, k_in = basis_sizes(factor_basis)
    modules = [model.get_submodule(layer.module_name) for layer in layers]
    for layer, module in zip(layers, modules):
        if not isinstance(module, nn.Linear) or layer.weight is None:
            raise UserError(f"factor_basis needs the weight of a Linear layer; '{layer.module_name}' is "
                            f"{'a ' + type(module).__name__ if layer.weight is not None else 'edited in its bias only'}: "
                            f"set factor_basis: 0 for it")
        if k_out > layer.rows or k_in > layer.cols:
            raise UserError(f"factor_basis {spelled_basis(factor_basis)} exceeds what layer '{layer.module_name}' "
                            f"({layer.rows} x {layer.cols}) can hold: choose at most {layer.rows} output and "
                            f"{layer.cols} input directions ([k_out, k_in] sizes the sides apart)")
    moments = _input_moments(modules, layers, run_reward)
    out, start = [], torch.Generator().manual_seed(0)
    for layer, w0, moment in zip(layers, originals, moments):
        left = _signed(torch.linalg.svd(w0.double(), full_matrices=False).U[:, :k_out]) if k_out else None
        right = _signed(torch.linalg.eigh(moment)[1][:, -k_in:].flip(1)) if k_in else None  # eigh ascends
        basis_u = _scaled(left, layer.rows).to(w0.device)
        basis_v = _scaled(right, layer.cols).to(w0.device)
        v_start = basis_v @ (V_START_STD * torch.randn(basis_v.shape[1], rank, generator=start)).to(w0.device)
        out.append((basis_u, basis_v, v_start))
    return out


def _scaled(directions: torch.Tensor | None, size: int) -> torch.Tensor:
    """k orthonormal directions times sqrt(size / k); None: the identity (every coordinate)."""
    if directions is None:
        return torch.eye(size)
    return (directions * (size / directions.shape[1]) ** 0.5).float()


def spelled_basis(factor_basis) -> str:
    """As YAML spells it: k, or [k_out, k_in]."""
    return str(factor_basis) if isinstance(factor_basis, int) else f"[{factor_basis[0]}, {factor_basis[1]}]"


def _input_moments(modules: list[nn.Linear], layers, run_reward) -> list[torch.Tensor]:
    """Per layer, E[x x^T] over every row entering its module while the reward samples run
    (one run for all layers), x extended by the constant 1 when the bias is edited: (cols,
    cols), float64."""
    totals = [{"moment": torch.zeros(layer.cols, layer.cols, dtype=torch.float64), "rows": 0} for layer in layers]

    def gatherer(layer, total):
        def gather(_module, inputs):
            x = inputs[0].reshape(-1, inputs[0].shape[-1]).double().cpu()
            if layer.bias is not None:
                x = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1)
            total["moment"] += x.T @ x
            total["rows"] += len(x)
        return gather

    hooks = [module.register_forward_pre_hook(gatherer(layer, total))
             for module, layer, total in zip(modules, layers, totals)]
    try:
        run_reward()
    finally:
        for hook in hooks:
            hook.remove()
    return [total["moment"] / max(total["rows"], 1) for total in totals]


def _signed(vectors: torch.Tensor) -> torch.Tensor:
    """Each column flipped so that its largest-magnitude entry is positive."""
    index = vectors.abs().argmax(0)
    signs = torch.sign(vectors[index, torch.arange(vectors.shape[1])])
    return vectors * torch.where(signs == 0, torch.ones_like(signs), signs)
