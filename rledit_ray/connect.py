"""How a verb reaches Ray: a private local instance, or a cluster that answers.

- No --address and no RAY_ADDRESS: a private Ray for this process (`ray.init(address="local")`),
  even when a cluster started with `ray start` runs on this machine, or one died and left its
  address file (/tmp/ray/ray_current_cluster) behind. Ray's own default would join such a
  cluster (and crash on the settings of a private one, or wait on a dead one); a run joins a
  cluster only when asked: `--address auto` (the latest `ray start` here) or HOST:PORT.
- --address or RAY_ADDRESS: that cluster, after a TCP connection to its bootstrap address has
  succeeded within CONNECT_TIMEOUT_S; Ray itself retries an address that does not answer for
  minutes. `auto` is the cluster recorded by the latest `ray start` here, and only that one
  (Ray's own `auto` would also join any other Ray instance it finds running on the machine).

`check_resources` refuses a request the connected cluster cannot hold: Ray would wait for it
forever without a word.
"""
from __future__ import annotations

import logging
import os
import socket

from rledit_ray.errors import UserError, one_line

CONNECT_TIMEOUT_S = 10.0
# The private Ray of a run: a small object store (the Parts are tens of MB), and a loopback
# address of its own (Ray rewrites 127.0.0.1 to the host's address).
LOCAL_OBJECT_STORE_BYTES = 300 * 2**20
LOCAL_NODE_IP = "127.0.0.2"
# Ray's count of attempts (about a second apart, each up to ~40 s) to reach a cluster's GCS.
GCS_ATTEMPTS = "RAY_gcs_server_port_wait_time_s"


def requested_address(address: str | None) -> str | None:
    """The cluster a verb was given (--address, else RAY_ADDRESS), "auto" read from the address
    file of the latest `ray start` here; None: a private Ray."""
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address == "auto":
        from ray._private.utils import read_ray_address

        # Only the recorded cluster: Ray's own "auto" also joins any other Ray it finds
        # running on the machine (another user's), which a run must never do by accident.
        recorded = read_ray_address()
        if not recorded:
            raise UserError("--address auto: no `ray start` cluster is recorded on this machine: start one with "
                            "`ray start --head`, name it (HOST:PORT), or leave --address out for a private Ray")
        return recorded
    return None if address == "local" else address


def check_address(address: str | None, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Refuse (one line) a cluster address where nothing answers within `timeout` seconds."""
    cluster = requested_address(address)
    if cluster is None:
        return
    host, port = _bootstrap(cluster)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as err:
        reason = "timed out" if isinstance(err, socket.timeout) else (err.strerror or one_line(err))
        raise UserError(f"no Ray cluster answers at --address {address or cluster} ({host}:{port}: {reason}): start "
                        f"one (`ray start --head`), fix the address, or leave --address out for a private Ray") from None


def _bootstrap(address: str) -> tuple[str, int]:
    """(host, port) Ray dials for `address`: 127.0.0.1 becomes the node's address as in Ray;
    ray:// is a Ray Client server."""
    from ray._private import services

    where = address[len("ray://"):] if address.startswith("ray://") else None
    if where is None:
        try:
            where = services.canonicalize_bootstrap_address(address)
        except ValueError:
            where = None
    host, sep, port = (where or "").rpartition(":")
    if not (sep and host and port.isdigit()):
        raise UserError(f"--address '{address}' is not HOST:PORT, auto, or ray://HOST:PORT")
    return host.strip("[]"), int(port)


def ensure_ray(address: str | None = None) -> None:
    """Start or join Ray as the module docstring says; a no-op when Ray already runs here.
    Ray's INFO lines ("Started a local Ray instance") stay out of stderr, which holds only
    the one line of an error."""
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    cluster = requested_address(address)
    if cluster is None:
        ray.init(address="local", include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING,
                 object_store_memory=LOCAL_OBJECT_STORE_BYTES, _node_ip_address=LOCAL_NODE_IP)
        return
    check_address(cluster)
    # One attempt at Ray's handshake (~40 s), not Ray's default of many: the TCP check saw
    # something listen there; if it is no Ray cluster, a user hears so in bounded time.
    previous = os.environ.get(GCS_ATTEMPTS)
    os.environ.setdefault(GCS_ATTEMPTS, "1")
    try:  # `cluster`: HOST:PORT (auto resolved above), never Ray's own search
        ray.init(address=cluster, log_to_driver=False, logging_level=logging.WARNING)  # e.g. under `ray job submit`
    except (ConnectionError, TimeoutError) as err:
        raise UserError(f"cannot join the Ray cluster at {cluster} (is a Ray head listening there?): "
                        f"{one_line(err)}") from None
    finally:
        if previous is None:
            os.environ.pop(GCS_ATTEMPTS, None)


def available_resources(address: str | None = None) -> dict[str, float]:
    """What the cluster a verb runs on has in all: the connected one, else the private Ray
    `ensure_ray` would start here (this machine; no need to start it to know), else the
    cluster at `address` (joined to ask it)."""
    import ray

    if not ray.is_initialized() and requested_address(address) is None:
        import torch
        from ray._private.utils import get_num_cpus  # the count Ray gives a local instance (cgroup-aware)

        return {"CPU": float(get_num_cpus()), "GPU": float(torch.cuda.device_count())}
    ensure_ray(address)
    return ray.cluster_resources()


def check_resources(cpus: float, gpus: float, what: str, address: str | None = None) -> None:
    """Refuse `what` when it needs more CPUs or GPUs than the cluster has in all."""
    have = available_resources(address)
    for need, key in ((cpus, "CPU"), (gpus, "GPU")):
        if need > have.get(key, 0.0) + 1e-9:
            raise UserError(f"{what} need {need:g} {key}s but the Ray cluster has {have.get(key, 0.0):g}: "
                            f"ask for fewer, or pass --address of a cluster that has them")


def agent_resources(agent, address: str | None = None) -> tuple[float, float]:
    """(CPUs, GPUs) RLlib requests for an AgentConfig: one CPU per EnvRunner and per remote
    learner without a GPU, and their GPUs. No GPU is counted where none is there at all: then
    the agent falls back to the CPU (agent/ppo.py: cpu_fallback)."""
    gpu_learners = agent.num_gpus_per_learner > 0
    cpus = agent.num_env_runners + (0 if gpu_learners else agent.num_learners)
    gpus = agent.num_env_runners * agent.num_gpus_per_env_runner + agent.num_learners * agent.num_gpus_per_learner
    if gpus and not available_resources(address).get("GPU", 0):
        gpus = 0.0
    return float(cpus), float(gpus)
