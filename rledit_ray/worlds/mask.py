"""MaskWorld: the agent scales weights multiplicatively.

W_t = W_0 * M_t, with M_0 = 1 and, by `mask_update`,
  multiplicative (default): M_t = clip(M_{t-1} * (1 + step_size * D_t), lo, hi);
  additive:                 M_t = clip(M_{t-1} + step_size * D_t, lo, hi).
Bounds keep the mask in a range where the edit stays a re-weighting of the original
weights (lo = 0 allows pruning an entry exactly; lo < 0 lets an entry change sign).
Under the multiplicative update an entry that reaches 0 stays 0 for the rest of the episode
and a negative factor flips the sign at every step, so a mask that must turn a weight
negative (a logit that only a sign flip pushes below the others) wants the additive update.
"""
import torch

from rledit_ray.worlds.base import EditWorld


class MaskWorld(EditWorld):
    kind = "mask"

    def _reset_state(self) -> None:
        if not hasattr(self, "masks"):
            self.masks = [torch.ones_like(w) for w in self.original]
            # Preallocated: on a big layer a fresh matrix per step costs page faults.
            self._product = [torch.empty_like(w) for w in self.original]
            self._edited = [torch.empty_like(w) for w in self.original]
        for mask in self.masks:
            mask.fill_(1.0)

    def _edit(self, i: int, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        lo, hi = self.settings.mask_bounds
        # M * (1 + s U V^T / r) written as M + (s / r) M * (U V^T): one product and one fused
        # in-place update. On a big layer every pass over the matrix costs about as much as
        # the arithmetic in it (measured on MNIST fc1: addmm onto a broadcast 1 first copied
        # the 1 into every entry, a pass of its own).
        product = torch.mm(u, v.T, out=self._product[i])
        mask, alpha = self.masks[i], self.settings.step_size / self.settings.rank
        if self.settings.mask_update == "additive":
            mask.add_(product, alpha=alpha).clamp_(lo, hi)
        else:
            mask.addcmul_(mask, product, value=alpha).clamp_(lo, hi)
        return torch.mul(self.original[i], mask, out=self._edited[i])
