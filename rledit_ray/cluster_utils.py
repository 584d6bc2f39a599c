"""A real multi-node Ray cluster on one machine, for tests and for trying `ray job submit`.

`LocalCluster` runs `ray start --head` and `ray start --address=...` as subprocesses on a
loopback address, every port picked free and every file under a private `--temp-dir`, so it
can live beside other Ray instances on the same machine. `stop()` ends only the processes
of that private session (`ray stop` would end every Ray on the machine):

    with LocalCluster() as cluster:            # head, 1 CPU
        cluster.add_node(num_cpus=1)           # a second raylet: a second node
        job = cluster.submit(["rledit", "train", "--dataset", "digits", "--out", "/abs/run"])
        cluster.wait(job)                      # "SUCCEEDED"

The commands it runs are the ones cluster/README.md documents; `commands` keeps them.
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rledit_ray.errors import UserError

LOOPBACK = "127.0.0.2"  # Ray rewrites 127.0.0.1 to the host's address
TERMINAL_STATES = ("SUCCEEDED", "FAILED", "STOPPED")
# Per-node ports Ray would otherwise take from fixed defaults (52365, 10001, ...) that a
# second node or another Ray instance on this machine already holds.
_NODE_PORTS = ("--node-manager-port", "--object-manager-port", "--dashboard-agent-listen-port",
               "--dashboard-agent-grpc-port", "--runtime-env-agent-port", "--metrics-export-port")


def free_port(host: str = LOOPBACK) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def ray_env(extra: dict | None = None) -> dict:
    """Environment for the `ray` CLI and every process it starts: offline, no auth token,
    and this interpreter's bin/ first on PATH so job entrypoints find `rledit`."""
    env = dict(os.environ)
    env.update(RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update(extra or {})
    return env


class LocalCluster:
    def __init__(self, num_cpus: int = 1, host: str = LOOPBACK, object_store_mb: int = 150,
                 env: dict | None = None, head_env: dict | None = None):
        self.host = host
        self.object_store = str(object_store_mb * 2**20)
        self.env = ray_env(env)
        # Short: Ray's socket paths live below it and must fit in 107 bytes. One --temp-dir
        # per node below it: nodes sharing one would unpack a job's working_dir into the same
        # folder, and one node's cleanup deletes it under the other node's workers.
        self.temp_dir = tempfile.mkdtemp(prefix="rlc-", dir="/tmp")
        self._nodes = 0
        self.gcs_port, self.dashboard_port = free_port(host), free_port(host)
        self.commands: list[str] = []
        self._ray = str(Path(sys.executable).parent / "ray")
        if not Path(self._ray).exists():
            self._ray = shutil.which("ray") or "ray"
        self._start_node(["--head", f"--port={self.gcs_port}", "--include-dashboard=true",
                          f"--dashboard-host={host}", f"--dashboard-port={self.dashboard_port}",
                          f"--ray-client-server-port={free_port(host)}"], num_cpus, head_env)

    # ------------------------------------------------------------------ nodes
    @property
    def gcs_address(self) -> str:
        return f"{self.host}:{self.gcs_port}"

    @property
    def dashboard_url(self) -> str:
        return f"http://{self.host}:{self.dashboard_port}"

    def add_node(self, num_cpus: int = 1, resources: dict | None = None, env: dict | None = None) -> None:
        """Another node; `env` is its own environment on top of the cluster's (its processes
        inherit it), e.g. {"RLEDIT_CACHE_DIR": ...} for a node that shares no cache."""
        extra = [f"--address={self.gcs_address}"]
        if resources:
            extra.append(f"--resources={json.dumps(resources)}")
        self._start_node(extra, num_cpus, env)

    def _start_node(self, extra: list[str], num_cpus: int, env: dict | None = None) -> None:
        ports = [f"{flag}={free_port(self.host)}" for flag in _NODE_PORTS]
        cmd = [self._ray, "start", *extra, f"--node-ip-address={self.host}", f"--num-cpus={num_cpus}",
               "--num-gpus=0", f"--object-store-memory={self.object_store}",
               f"--temp-dir={os.path.join(self.temp_dir, f'n{self._nodes}')}",
               "--min-worker-port=0", "--max-worker-port=0", "--disable-usage-stats", *ports]
        self._nodes += 1
        self._run(cmd, timeout=120, env=env)

    def node_ids(self) -> list[str]:
        """The alive nodes' ids, the head's first."""
        out = self._run([self._ray, "list", "nodes", "--address", self.dashboard_url,
                         "--format", "json", "--filter", "state=ALIVE"], timeout=60)
        nodes = sorted(json.loads(out), key=lambda n: not n.get("is_head_node"))
        return [n["node_id"] for n in nodes]

    # ------------------------------------------------------------------ jobs
    def submit(self, entrypoint: list[str], working_dir: str | Path | None = None,
               runtime_env: dict | None = None, submission_id: str | None = None) -> str:
        """`ray job submit --no-wait`; returns the submission id."""
        submission_id = submission_id or f"rledit-{int(time.time() * 1000)}"
        cmd = [self._ray, "job", "submit", "--address", self.dashboard_url, "--submission-id", submission_id,
               "--no-wait"]
        if working_dir:
            cmd += ["--working-dir", str(working_dir)]
        if runtime_env:
            cmd += ["--runtime-env-json", json.dumps(runtime_env)]
        self._run([*cmd, "--", *entrypoint], timeout=120)
        return submission_id

    def status(self, submission_id: str) -> dict:
        """The job's record from the dashboard's job API (status, start_time, end_time, ...)."""
        from urllib.request import urlopen

        with urlopen(f"{self.dashboard_url}/api/jobs/{submission_id}", timeout=30) as r:
            return json.loads(r.read())

    def wait(self, submission_id: str, timeout: float = 600, poll: float = 1.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.status(submission_id)["status"]
            if state in TERMINAL_STATES:
                return state
            time.sleep(poll)
        raise TimeoutError(f"job {submission_id} not finished after {timeout:.0f} s")

    def logs(self, submission_id: str) -> str:
        return self._run([self._ray, "job", "logs", "--address", self.dashboard_url, submission_id],
                         timeout=60)

    def actors(self, class_name: str) -> list[dict]:
        """Every actor of that class ever created here, dead ones included, with node_id and pid."""
        out = self._run([self._ray, "list", "actors", "--address", self.dashboard_url, "--format", "json",
                         "--detail", "--limit", "1000", "--filter", f"class_name={class_name}"], timeout=60)
        return json.loads(out)

    # ------------------------------------------------------------------ teardown
    def stop(self) -> None:
        """End this cluster's processes only: those naming its temp dir, and their children
        (workers, job drivers). A global `ray stop` would also end other users' Ray."""
        pids = _session_pids(self.temp_dir)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + 10
            while sig == signal.SIGTERM and time.monotonic() < deadline and any(_alive(p) for p in pids):
                time.sleep(0.2)
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __enter__(self) -> "LocalCluster":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _run(self, cmd: list[str], timeout: float, env: dict | None = None) -> str:
        self.commands.append(shlex.join(cmd))
        proc = subprocess.run(cmd, env={**self.env, **(env or {})}, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            self.stop() if cmd[1] == "start" else None
            raise UserError(f"'{shlex.join(cmd[:3])}' failed ({proc.returncode}): "
                            f"{(proc.stderr or proc.stdout).strip().splitlines()[-1:]}")
        return proc.stdout


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def _session_pids(marker: str) -> list[int]:
    """PIDs whose command line contains `marker`, plus all their descendants (from /proc)."""
    parent, roots = {}, set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        pid = int(entry.name)
        parent[pid] = ppid
        if marker in cmdline and pid != os.getpid():
            roots.add(pid)
    found, changed = set(roots), True
    while changed:  # close over children
        kids = {p for p, pp in parent.items() if pp in found and p not in found and p != os.getpid()}
        changed = bool(kids)
        found |= kids
    return sorted(found)
