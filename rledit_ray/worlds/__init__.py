"""Editing worlds as gymnasium envs. They know tasks and targets, never Ray.

The gymnasium ids (WORLD_IDS) are registered by the package's __init__, by entry-point string:
making `rledit/MaskWorld-v0` builds the world from a run config through rledit_ray.build, which
this package never imports.

The names below load on first use (PEP 562), so that `rledit_ray.worlds.settings` (what a run
config is checked against) imports without torch.
"""
import importlib

from rledit_ray.names import WORLD_IDS

_HOMES = {
    "EditWorld": "base", "resolve_device": "base", "WorldSettings": "settings", "WorldBatch": "batched",
    "EditLayer": "layers", "resolve_edit_layers": "layers", "MaskWorld": "mask", "ShiftWorld": "shift",
}
__all__ = [*_HOMES, "WORLD_IDS"]


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(importlib.import_module(f"rledit_ray.worlds.{_HOMES[name]}"), name)
    raise AttributeError(f"module 'rledit_ray.worlds' has no attribute {name!r}")
