"""Editing worlds as gymnasium envs. They know tasks and targets, never Ray.

The gymnasium ids (WORLD_IDS) are registered by the package's __init__, by entry-point string:
making `rledit/MaskWorld-v0` builds the world from a run config through rledit_ray.build, which
this package never imports.
"""
from rledit_ray.names import WORLD_IDS
from rledit_ray.worlds.base import EditWorld, WorldSettings, resolve_device
from rledit_ray.worlds.batched import WorldBatch
from rledit_ray.worlds.layers import EditLayer, resolve_edit_layers
from rledit_ray.worlds.mask import MaskWorld
from rledit_ray.worlds.shift import ShiftWorld

__all__ = [
    "EditWorld", "WorldSettings", "WorldBatch", "resolve_device",
    "EditLayer", "resolve_edit_layers", "MaskWorld", "ShiftWorld", "WORLD_IDS",
]
