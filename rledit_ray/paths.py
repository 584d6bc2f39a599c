"""Where cached artefacts (parsed datasets, trained targets) live.

`RLEDIT_CACHE_DIR` overrides the default `~/.cache/rledit_ray`; Ray workers inherit the
environment, so every process of a run agrees on the location.
"""
import os
from pathlib import Path


def cache_dir() -> Path:
    root = os.environ.get("RLEDIT_CACHE_DIR") or Path.home() / ".cache" / "rledit_ray"
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path
