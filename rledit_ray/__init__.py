"""rledit-ray: edit trained neural networks with reinforcement learning, on Ray.

Importing the package registers the gymnasium envs `rledit/MaskWorld-v0` and
`rledit/ShiftWorld-v0` (by entry-point string) and nothing heavier: torch and Ray are imported
by the modules that use them, so that `rledit train` can start Ray before it loads torch.
`rledit_ray.edit` and `rledit_ray.EditResult` load the Python API (api.py) on first use.
"""
import gymnasium as gym

from rledit_ray.names import WORLD_ENTRY_POINTS, WORLD_IDS

for _world, _world_id in WORLD_IDS.items():
    if _world_id not in gym.registry:
        gym.register(_world_id, entry_point=WORLD_ENTRY_POINTS[_world])

__all__ = ["edit", "EditResult"]

__version__ = "0.1.0"


def __getattr__(name: str):
    if name in __all__:
        from rledit_ray import api

        return getattr(api, name)
    raise AttributeError(f"module 'rledit_ray' has no attribute {name!r}")
