"""ShiftWorld: the agent adds to weights.

W_t = W_{t-1} + step_size * s * D_t, where s is the standard deviation of the layer's
original weights, so one step size means the same relative change in every layer.
"""
from rledit_ray.worlds.base import EditWorld


class ShiftWorld(EditWorld):
    def _reset_state(self) -> None:
        self.current = [w.clone() for w in self.original]

    def _edit(self, i: int, delta):
        self.current[i] += (self.settings.step_size * self.scales[i]) * delta
        return self.current[i]
