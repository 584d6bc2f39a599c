"""Editing worlds as gymnasium envs. They know tasks and targets, never Ray.

The gymnasium ids are registered by entry-point string: making `rledit/MaskWorld-v0` builds the
world from a run config through rledit_ray.build, which this package never imports.
"""
import gymnasium as gym

from rledit_ray.worlds.base import EditWorld, WorldSettings, resolve_device
from rledit_ray.worlds.batched import WorldBatch
from rledit_ray.worlds.layers import EditLayer, resolve_edit_layers
from rledit_ray.worlds.mask import MaskWorld
from rledit_ray.worlds.shift import ShiftWorld

WORLD_IDS = {"mask": "rledit/MaskWorld-v0", "shift": "rledit/ShiftWorld-v0"}

for _world_id, _entry in ((WORLD_IDS["mask"], "make_mask_world"), (WORLD_IDS["shift"], "make_shift_world")):
    if _world_id not in gym.registry:
        gym.register(_world_id, entry_point=f"rledit_ray.build:{_entry}")

__all__ = [
    "EditWorld", "WorldSettings", "WorldBatch", "resolve_device",
    "EditLayer", "resolve_edit_layers", "MaskWorld", "ShiftWorld", "WORLD_IDS",
]
