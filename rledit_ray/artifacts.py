"""Bring a folder written on any node of a Ray cluster to the driver's disk.

A Tune trial runs wherever the cluster has room, and on a cluster whose nodes share no disk
the run directory it writes (checkpoint, edited weights, metrics, report) stays on that node.
A `FolderSink` actor pinned to the driver's node receives the folder as one archive and
unpacks it under the output folder, atomically: a half-written run never appears there.
"""
from __future__ import annotations

import io
import tarfile
from pathlib import Path

from rledit_ray.atomic import replace_folder


def pack(folder: Path) -> bytes:
    """The folder's files as one gzipped tar archive, in memory (run folders are a few MB)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        archive.add(str(folder), arcname=".")
    return buffer.getvalue()


class FolderSink:
    """Unpacks archives under `root`; runs as a Ray actor on the driver's node."""

    def __init__(self, root: str):
        self.root = Path(root)

    def write(self, relative: str, archive: bytes) -> str:
        target = (self.root / relative).resolve()
        if self.root.resolve() not in target.parents:
            raise ValueError(f"'{relative}' is outside {self.root}")

        def unpack(tmp: Path) -> None:
            with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
                tar.extractall(tmp, filter="data")  # "data": no absolute paths, links out, or devices

        return str(replace_folder(target, unpack))


def sink_on_this_node(root: Path):
    """A FolderSink actor on the node this process runs on (the driver's)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = NodeAffinitySchedulingStrategy(node_id=ray.get_runtime_context().get_node_id(), soft=False)
    return ray.remote(num_cpus=0)(FolderSink).options(scheduling_strategy=here).remote(str(root))
