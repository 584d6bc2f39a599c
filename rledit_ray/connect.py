"""How a verb reaches Ray: a private local instance, or a cluster that answers.

- No --address and no RAY_ADDRESS: a private Ray for this process (`ray.init(address="local")`),
  even when a cluster started with `ray start` runs on this machine, or one died and left its
  address file (/tmp/ray/ray_current_cluster) behind. Ray's own default would join such a
  cluster (and crash on the settings of a private one, or wait on a dead one); a run joins a
  cluster only when asked: `--address auto` (the latest `ray start` here) or HOST:PORT.
- --address or RAY_ADDRESS: that cluster, after its bootstrap address has answered as a gRPC
  server within CONNECT_TIMEOUT_S; Ray itself retries an address that does not answer for
  minutes, and takes ~40 s to give up on one where something else listens. `auto` is the
  cluster recorded by the latest `ray start` here, and only that one (Ray's own `auto` would
  also join any other Ray instance it finds running on the machine).

`start_ray_early` begins starting the private Ray in a thread of its own, so that its seconds
overlap a run's data and target loading; `ensure_ray` waits for it.

`exit_process` ends a command without the seconds of Ray's graceful shutdown where the Ray is
this process's own, and without the interpreter's teardown where nothing is left to wait for.

`check_resources` refuses a request the connected cluster cannot hold: Ray would wait for it
forever without a word.
"""
from __future__ import annotations

import importlib
import logging
import os
import signal
import socket
import sys
import threading

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


# What a gRPC server (Ray's GCS, a Ray Client server) answers first: an HTTP/2 SETTINGS frame.
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
HTTP2_SETTINGS = 4


def check_address(address: str | None, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Refuse (one line) a cluster address where nothing answers within `timeout` seconds, or
    where what answers speaks no gRPC (so is no Ray): Ray's own handshake would take ~40 s to
    give up on it."""
    cluster = requested_address(address)
    if cluster is None:
        return
    host, port = _bootstrap(cluster)
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            reason = None if _tls() else _not_grpc(conn)
    except OSError as err:
        reason = "timed out" if isinstance(err, socket.timeout) else (err.strerror or one_line(err))
    if reason is not None:
        raise UserError(f"no Ray cluster answers at --address {address or cluster} ({host}:{port}: {reason}): start "
                        f"one (`ray start --head`), fix the address, or leave --address out for a private Ray")


def _tls() -> bool:
    """Ray with RAY_USE_TLS speaks TLS first: the HTTP/2 check below would not be answered."""
    return os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true")


def _not_grpc(conn: socket.socket) -> str | None:
    """Why the server on `conn` is no gRPC server (None: it answered HTTP/2's preface with its
    SETTINGS frame, as every gRPC server does at once)."""
    conn.sendall(HTTP2_PREFACE)
    try:
        first = conn.recv(9)
    except socket.timeout:
        return "it accepts connections but does not answer as Ray's gRPC server does"
    if len(first) >= 4 and first[3] == HTTP2_SETTINGS:
        return None
    return "what listens there is not Ray's gRPC server"


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


_private = threading.Event()  # set once this process has started a private Ray (from any thread)
_early: dict = {}  # the start_ray_early in flight: {"done": Event, "error": what it raised}


class _NoThreadNote(logging.Filter):
    """Ray's warning that a thread other than the main one cannot install its SIGTERM handler:
    start_ray_early installs it from the main thread itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "SIGTERM handler is not set" not in record.getMessage()


def start_ray_early(address: str | None = None) -> None:
    """Start the private Ray `ensure_ray(address)` would start, in a background thread (Ray's
    start takes ~4 s here, mostly waiting on its processes). Nothing to do for a cluster (joining
    one is quick) or when Ray already runs."""
    ray = sys.modules.get("ray")  # not imported yet: then not running either, and imported by the thread
    if _early or (ray is not None and ray.is_initialized()) or requested_address(address) is not None:
        return
    if threading.current_thread() is threading.main_thread():
        # What ray.init installs when it is called from the main thread, as it is not here.
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(signum))
    logging.getLogger("ray._private.worker").addFilter(_NoThreadNote())
    done = threading.Event()

    def start() -> None:
        try:
            _start_private()
        except BaseException as err:  # re-raised by ensure_ray, in the caller's thread
            _early["error"] = err
        done.set()
        # Park for good: Ray's processes are killed when the thread that started them ends
        # (they carry PR_SET_PDEATHSIG), so this thread must live as long as the process.
        threading.Event().wait()

    _early["done"] = done
    threading.Thread(target=start, name="rledit-ray-start", daemon=True).start()


def _wait_for_early_start() -> None:
    if _early:
        _early["done"].wait()
        error = _early.get("error")
        _early.clear()
        # A ray.init of the caller's own while the start was in flight (a command that ended
        # early in a process that then started Ray itself, as tests do) makes the start fail
        # with "ray.init twice": Ray runs, which is all the start was for.
        if error is not None and not sys.modules["ray"].is_initialized():
            raise error


def _start_private() -> None:
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # No prestarted workers: a run in the driver (the default) needs none, and on 2 cores their
    # start competes with the driver's (measured: ray.init 3.4 s instead of 4.4 s).
    ray.init(address="local", include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING,
             object_store_memory=LOCAL_OBJECT_STORE_BYTES, _node_ip_address=LOCAL_NODE_IP,
             _system_config={"prestart_worker_first_driver": False, "enable_worker_prestart": False})
    _private.set()


def exit_process(code: int) -> None:
    """End the process with status `code`, its output flushed. With a private Ray of its own
    running, at once: Ray's graceful shutdown and the interpreter's teardown take ~3 s here, so
    every process this one started (Ray's GCS, raylet, agents, workers: nothing else starts
    any) is killed, then os._exit. A joined cluster is left the ordinary way (sys.exit), so
    that it sees the driver go. Without Ray, at once too when no child process and no thread
    is left that the teardown would wait for (the teardown of a process that imported torch
    takes ~0.4 s here; every file a command writes is closed by then), else sys.exit."""
    ray = sys.modules.get("ray")  # not imported: no Ray to end (and no 0.2 s import to pay)
    if not _early and (ray is None or not ray.is_initialized()):
        if _nothing_to_wait_for():
            _flush_and_exit(code)
        sys.exit(code)
    if _early or _private.is_set():  # Ray runs (or is starting, which is ours too): ours to end, or a cluster's
        if _early:
            # A command that failed while Ray was still starting (a user error found early) waits
            # for the start: a process forked while this thread flushes and kills inherits a held
            # lock, and its "Exception ignored" traceback reached the user's stderr (seen in tests).
            _early["done"].wait(timeout=60)
        # psutil is Ray's own copy (ray/thirdparty_files), on the path once ray is imported, and an
        # early start may still be importing ray: importing it here waits for that import.
        importlib.import_module("ray")
        import psutil

        for child in psutil.Process().children(recursive=True):
            try:
                child.kill()
            except psutil.Error:  # already gone
                pass
        _flush_and_exit(code)
    sys.exit(code)


def _nothing_to_wait_for() -> bool:
    """No thread but this one and no child process (a pool's workers, a spawned tool) alive."""
    if any(t is not threading.current_thread() and not t.daemon for t in threading.enumerate()):
        return False
    try:
        return not _children()
    except OSError:  # no /proc (macOS): let the interpreter end it the ordinary way
        return False


def _children() -> list[int]:
    """This process's child pids, from /proc (psutil is Ray's copy, not imported without Ray)."""
    children = []
    for task in os.listdir(f"/proc/{os.getpid()}/task"):
        with open(f"/proc/{os.getpid()}/task/{task}/children") as f:
            children += f.read().split()
    return [int(c) for c in children]


def _flush_and_exit(code: int) -> None:
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    logging.shutdown()
    os._exit(code)


def ensure_ray(address: str | None = None) -> None:
    """Start or join Ray as the module docstring says (waiting for a start_ray_early); a no-op
    when Ray already runs here. Ray's INFO lines ("Started a local Ray instance") stay out of
    stderr, which holds only the one line of an error."""
    import ray

    _wait_for_early_start()
    if ray.is_initialized():
        return
    cluster = requested_address(address)
    if cluster is None:
        _start_private()
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    check_address(cluster)
    # One attempt at Ray's handshake (~40 s), not Ray's default of many: the check saw a gRPC
    # server there; if it is no Ray cluster, a user hears so in bounded time.
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
