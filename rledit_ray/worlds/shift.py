"""ShiftWorld: the agent adds to weights.

W_t = W_{t-1} + step_size * s * D_t, where s is the standard deviation of the layer's
original weights, so one step size means the same relative change in every layer.

Because every step adds a low-rank term, W_t = W_0 + A B^T with A, B the steps' factors side
by side (rank r per step). When one Linear layer is edited and the split can use that (the
memo split of a non-Sequential target: transformers), the reward's forward pass computes the
layer as its cached original output plus (x B) A^T, a few multiply-adds per row instead of
the layer's whole matrix product (`low_rank_edit`). With factor bases B = B_v c, and x's
projection on B_v is cached as well.
"""
import torch
from torch import nn

from rledit_ray.cache import fingerprint
from rledit_ray.targets.forward import LowRankEdit
from rledit_ray.worlds.base import EditWorld

# The factored form pays while its R (m + n) multiply-adds per row stay well under m n.
_LOW_RANK_SHARE = 0.5


class ShiftWorld(EditWorld):
    kind = "shift"

    def _reset_state(self) -> None:
        self.current = [w.clone() for w in self.original]
        if not hasattr(self, "_factorable"):  # the first reset, at the end of __init__
            self._factorable = self._factorable_layer()
        self._factors: tuple[torch.Tensor, torch.Tensor] | None = None  # (A, B or c) since the reset

    def _edit(self, i: int, u, v):
        # W += (step * s / r) U V^T, the product fused into the update.
        alpha = self.settings.step_size * self.scales[i] / self.settings.rank
        if self._factorable is not None:
            basis = self._factorable["basis"]
            # With a basis V = B_v c, and B_v's columns are orthogonal: c = B_v^T V / |B_v|^2.
            a, b = u * alpha, v if basis is None else (basis.T @ v) / self._factorable["basis_norms"][:, None]
            if self._factors is not None:
                a, b = torch.cat([self._factors[0], a], 1), torch.cat([self._factors[1], b], 1)
            self._factors = (a, b)
        return self.current[i].addmm_(u, v.T, alpha=alpha)

    def low_rank_edit(self) -> LowRankEdit | None:
        if self._factorable is None or self._factors is None:
            return None
        a, b = self._factors
        layer, f = self.layers[0], self._factorable
        if a.shape[1] * (layer.rows + layer.cols) > _LOW_RANK_SHARE * layer.rows * layer.cols:
            return None  # a long episode's accumulated rank: the plain product is cheaper
        return LowRankEdit(layer.module_name, f["weight"], f["bias"], a, b, f["key"], f["basis"], f["basis_key"])

    def _factorable_layer(self) -> dict | None:
        """W0, b0 and the factor basis of the one edited Linear layer, with their content keys,
        when the split can evaluate it factored; else None."""
        if not self.split.low_rank or len(self.layers) != 1 or self.layers[0].weight is None:
            return None
        layer = self.layers[0]
        module = self.model.get_submodule(layer.module_name)
        if not isinstance(module, nn.Linear):
            return None
        fan_in = module.in_features
        weight = self.original[0][:, :fan_in]
        bias = self.original[0][:, fan_in] if layer.bias is not None else module.bias
        bias = None if bias is None else bias.detach().clone()
        basis = None if self.bases is None else self.bases[0][1]
        return {"weight": weight, "bias": bias, "key": fingerprint(weight, bias if bias is not None else "no bias"),
                "basis": basis, "basis_norms": None if basis is None else basis.pow(2).sum(0),
                "basis_key": "" if basis is None else fingerprint(basis)}
