"""MaskWorld: the agent scales weights multiplicatively.

W_t = W_0 * M_t, with M_0 = 1 and M_t = clip(M_{t-1} * (1 + step_size * D_t), lo, hi).
Bounds keep the mask in a range where the edit stays a re-weighting of the original
weights (lo = 0 allows pruning an entry exactly).
"""
import torch

from rledit_ray.worlds.base import EditWorld


class MaskWorld(EditWorld):
    def _reset_state(self) -> None:
        self.masks = [torch.ones_like(w) for w in self.original]

    def _edit(self, i: int, delta: torch.Tensor) -> torch.Tensor:
        lo, hi = self.settings.mask_bounds
        # In place: on a big layer each temporary costs as much as the arithmetic.
        self.masks[i].mul_(delta.mul_(self.settings.step_size).add_(1.0)).clamp_(lo, hi)
        return self.original[i] * self.masks[i]
