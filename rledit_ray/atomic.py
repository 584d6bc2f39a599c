"""Every file and folder the project writes goes through here, atomically.

Each writer fills a temporary sibling of the final path and renames it into place, so a kill
at any moment leaves either the old file or the new one, never half of one (a run directory
can be resumed or summarised after a crash). A temporary name carries the process id: two
processes writing the same cache entry (EnvRunners of one node) never share a temporary.
"""
from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def replacing(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it onto `path`, on failure
    delete it. `suffix`: for writers that insist on an extension (numpy adds `.npy`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> None:
    with replacing(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_bytes(path: str | Path, data: bytes) -> None:
    with replacing(path) as tmp:
        tmp.write_bytes(data)


def write_json(path: str | Path, data) -> None:
    write_text(path, json.dumps(data, indent=2, default=float) + "\n")


def write_yaml(path: str | Path, data: dict) -> None:
    import yaml

    write_text(path, yaml.safe_dump(data, sort_keys=False))


def save_npy(path: str | Path, array) -> None:
    import numpy as np

    with replacing(path, suffix=".npy") as tmp:
        np.save(tmp, array)


def save_npz(path: str | Path, **arrays) -> None:
    import numpy as np

    with replacing(path, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)


def save_safetensors(state: dict, path: str | Path, metadata: dict[str, str] | None = None) -> None:
    from safetensors.torch import save_file

    with replacing(path) as tmp:
        save_file(state, str(tmp), metadata=metadata)


def save_weights(model, path: str | Path, meta: dict) -> None:
    """A model's weights (safetensors, with `meta` inside too) and `meta` as json beside them."""
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_safetensors(state, path, metadata={"rledit": json.dumps(meta)})
    write_json(Path(path).with_suffix(".json"), meta)


def save_figure(fig, path: str | Path, dpi: int = 110) -> None:
    """Lay out, write the PNG, then free the figure (pyplot keeps every open one alive)."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    try:
        with replacing(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=dpi)
    finally:
        plt.close(fig)


def replace_folder(path: str | Path, fill: Callable[[Path], None]) -> Path:
    """Build a folder with `fill(tmp)` (which creates `tmp`) beside `path`, then swap it in for
    the old one (if any). Between the two renames only `path.old` exists (readers fall back to
    it); it is deleted once the new folder is in. A leftover `path.tmp` of a killed build is
    never read and is cleared here."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    old = path.with_name(path.name + ".old")
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        fill(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if path.exists():
        shutil.rmtree(old, ignore_errors=True)
        path.rename(old)
    tmp.rename(path)
    shutil.rmtree(old, ignore_errors=True)
    return path
