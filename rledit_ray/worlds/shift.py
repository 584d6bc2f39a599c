"""ShiftWorld: the agent adds to weights.

W_t = W_{t-1} + step_size * s * D_t, where s is the standard deviation of the layer's
original weights, so one step size means the same relative change in every layer.
"""
from rledit_ray.worlds.base import EditWorld


class ShiftWorld(EditWorld):
    kind = "shift"

    def _reset_state(self) -> None:
        self.current = [w.clone() for w in self.original]

    def _edit(self, i: int, u, v):
        # W += (step * s / r) U V^T, the product fused into the update.
        alpha = self.settings.step_size * self.scales[i] / self.settings.rank
        return self.current[i].addmm_(u, v.T, alpha=alpha)
