"""How a verb reaches Ray: a private local instance, or a cluster that answers.

- No --address and no RAY_ADDRESS: a private Ray for this process (`ray.init(address="local")`),
  even when a cluster started with `ray start` runs on this machine, or one died and left its
  address file (/tmp/ray/ray_current_cluster) behind. Ray's own default would join such a
  cluster (and crash on the settings of a private one, or wait on a dead one); a run joins a
  cluster only when asked: `--address auto` (the latest `ray start` here) or HOST:PORT.
- --address or RAY_ADDRESS: that cluster, after a TCP connection to its bootstrap address has
  succeeded within CONNECT_TIMEOUT_S; Ray itself retries an address that does not answer for
  minutes.

`check_resources` refuses a request the connected cluster cannot hold: Ray would wait for it
forever without a word.
"""
from __future__ import annotations

import os
import socket

from rledit_ray.errors import UserError, one_line

CONNECT_TIMEOUT_S = 10.0
# The private Ray of a run: a small object store (the Parts are tens of MB), and a loopback
# address of its own (Ray rewrites 127.0.0.1 to the host's address).
LOCAL_OBJECT_STORE_BYTES = 300 * 2**20
LOCAL_NODE_IP = "127.0.0.2"


def requested_address(address: str | None) -> str | None:
    """The cluster address a verb was given (--address, else RAY_ADDRESS); None: a private Ray."""
    address = address or os.environ.get("RAY_ADDRESS") or None
    return None if address == "local" else address


def check_address(address: str | None, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Refuse (one line) a cluster address where nothing answers within `timeout` seconds."""
    address = requested_address(address)
    if address is None:
        return
    host, port = _bootstrap(address)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as err:
        reason = "timed out" if isinstance(err, socket.timeout) else (err.strerror or one_line(err))
        raise UserError(f"no Ray cluster answers at --address {address} ({host}:{port}: {reason}): start one "
                        f"(`ray start --head`), fix the address, or leave --address out for a private Ray") from None


def _bootstrap(address: str) -> tuple[str, int]:
    """(host, port) Ray dials for `address`: "auto" reads the address file of the latest `ray
    start`, 127.0.0.1 becomes the node's address as in Ray, ray:// is a Ray Client server."""
    from ray._private import services

    if address.startswith("ray://"):
        where = address[len("ray://"):]
    else:
        try:
            where = services.canonicalize_bootstrap_address(address)
        except ConnectionError:  # "auto" and no `ray start` on this machine
            raise UserError(f"--address {address}: no running Ray cluster found on this machine: start one with "
                            f"`ray start --head`, or leave --address out for a private Ray") from None
        except ValueError:
            raise UserError(f"--address '{address}' is not HOST:PORT, auto, or ray://HOST:PORT") from None
        if where is None:
            raise UserError(f"--address {address}: no running Ray cluster found on this machine")
    host, sep, port = where.rpartition(":")
    if not (sep and host and port.isdigit()):
        raise UserError(f"--address '{address}' is not HOST:PORT, auto, or ray://HOST:PORT")
    return host.strip("[]"), int(port)


def ensure_ray(address: str | None = None) -> None:
    """Start or join Ray as the module docstring says; a no-op when Ray already runs here."""
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    cluster = requested_address(address)
    if cluster is None:
        ray.init(address="local", include_dashboard=False, log_to_driver=False,
                 object_store_memory=LOCAL_OBJECT_STORE_BYTES, _node_ip_address=LOCAL_NODE_IP)
        return
    check_address(cluster)
    try:
        ray.init(address=cluster, log_to_driver=False)  # a cluster, e.g. under `ray job submit`
    except (ConnectionError, TimeoutError) as err:
        raise UserError(f"cannot join the Ray cluster at {cluster}: {one_line(err)}") from None


def check_resources(cpus: float, gpus: float, what: str) -> None:
    """Refuse `what` when it needs more CPUs or GPUs than the connected cluster has in all."""
    import ray

    have = ray.cluster_resources()
    for need, key in ((cpus, "CPU"), (gpus, "GPU")):
        if need > have.get(key, 0.0) + 1e-9:
            raise UserError(f"{what} need {need:g} {key}s but the Ray cluster has {have.get(key, 0.0):g}: "
                            f"ask for fewer, or pass --address of a cluster that has them")


def agent_resources(agent) -> tuple[float, float]:
    """(CPUs, GPUs) RLlib requests for an AgentConfig: one CPU per EnvRunner and per remote
    learner without a GPU, and their GPUs. No GPU is counted where none is visible at all:
    then the agent falls back to the CPU (agent/ppo.py: cpu_fallback)."""
    import ray
    import torch

    gpu_learners = agent.num_gpus_per_learner > 0
    cpus = agent.num_env_runners + (0 if gpu_learners else agent.num_learners)
    gpus = agent.num_env_runners * agent.num_gpus_per_env_runner + agent.num_learners * agent.num_gpus_per_learner
    if not (torch.cuda.is_available() or ray.cluster_resources().get("GPU", 0) > 0):
        gpus = 0.0
    return float(cpus), float(gpus)
