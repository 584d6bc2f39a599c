"""MaskWorld: the agent scales weights multiplicatively.

W_t = W_0 * M_t, with M_0 = 1 and M_t = clip(M_{t-1} * (1 + step_size * D_t), lo, hi).
Bounds keep the mask in a range where the edit stays a re-weighting of the original
weights (lo = 0 allows pruning an entry exactly).
"""
import torch

from rledit_ray.worlds.base import EditWorld


class MaskWorld(EditWorld):
    def _reset_state(self) -> None:
        if not hasattr(self, "masks"):
            self.masks = [torch.ones_like(w) for w in self.original]
            self._one = self.original[0].new_ones(())  # broadcast by addmm: no matrix of ones
            # Preallocated: on a big layer a fresh matrix per step costs page faults.
            self._factor = [torch.empty_like(w) for w in self.original]
            self._edited = [torch.empty_like(w) for w in self.original]
        for mask in self.masks:
            mask.fill_(1.0)

    def _edit(self, i: int, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        lo, hi = self.settings.mask_bounds
        # 1 + step * U V^T / r in one fused op, the rest in place: on a big layer every
        # pass over the matrix costs about as much as the arithmetic in it.
        factor = torch.addmm(self._one, u, v.T, alpha=self.settings.step_size / self.settings.rank,
                             out=self._factor[i])
        self.masks[i].mul_(factor).clamp_(lo, hi)
        return torch.mul(self.original[i], self.masks[i], out=self._edited[i])
