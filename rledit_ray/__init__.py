"""rledit-ray: edit trained neural networks with reinforcement learning, on Ray.

Importing the package registers the gymnasium envs `rledit/MaskWorld-v0` and
`rledit/ShiftWorld-v0`. Ray is only imported by the agent/CLI layers.
"""
from rledit_ray import worlds  # noqa: F401  (registers the gymnasium ids)
from rledit_ray.api import EditResult, edit

__all__ = ["edit", "EditResult"]

__version__ = "0.1.0"
