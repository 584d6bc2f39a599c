"""What reaches a terminal: the real `rledit` process, for mistakes that must not hang or show a
traceback. A cluster address where nothing listens is given up on within seconds; a run
without --address starts a private Ray even next to a `ray start` cluster or the address file
a dead one left (connect.py); a few of the issue's examples run as written.
"""
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from rledit_ray.cluster_utils import LocalCluster, free_port

REPO = Path(__file__).resolve().parents[1]
DIGITS = ["--dataset", "digits", "--forget-class", "3"]


def rledit(*args, env: dict | None = None, timeout: float = 120):
    return subprocess.run([sys.executable, "-m", "rledit_ray", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})}, cwd=REPO)


def assert_one_line(result, expected: str) -> None:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and len(lines) == 1, result.stderr[-3000:]
    assert expected in lines[0], lines[0]


@pytest.fixture
def ray_tmpdir():
    """A private place for Ray's address file (/tmp/ray/ray_current_cluster by default): the one
    a test writes must not steer another process on this machine. Short: Ray's socket paths
    below it must fit in 107 bytes."""
    folder = tempfile.mkdtemp(prefix="rt-", dir="/tmp")
    (Path(folder) / "ray").mkdir()
    yield Path(folder)
    subprocess.run(["rm", "-rf", folder], check=False)


@pytest.mark.parametrize("verb", ["train", "sweep", "bench"])
def test_an_address_where_nothing_listens_is_given_up_within_seconds(verb, tmp_path):
    args = {"train": ["train", *DIGITS, "--out", tmp_path / "run"],
            "sweep": ["sweep", REPO / "tune_configs" / "digits_smoke.yaml", "--out", tmp_path / "run"],
            "bench": ["bench", "--configs", "default"]}[verb]
    started = time.monotonic()
    assert_one_line(rledit(*args, "--address", "127.0.0.1:1", timeout=60), "no Ray cluster answers at --address 127.0.0.1:1")
    assert time.monotonic() - started < 30 and not (tmp_path / "run").exists()


def test_an_address_where_something_else_listens_is_given_up_within_seconds(tmp_path):
    import socket

    with socket.socket() as server:  # a port that accepts connections but speaks no Ray
        server.bind(("127.0.0.2", 0))
        server.listen()
        started = time.monotonic()
        result = rledit("train", *DIGITS, "--address", "127.0.0.2:%d" % server.getsockname()[1],
                        "--out", tmp_path / "run", timeout=150)
    # Not after Ray's ~40 s handshake: the gRPC check answers within its 10 s, before Ray is tried.
    assert_one_line(result, "does not answer as Ray's gRPC server")
    assert time.monotonic() - started < 30
    assert not (tmp_path / "run").exists()


def test_a_stale_address_file_neither_hangs_nor_is_joined(ray_tmpdir, tmp_path):
    dead = f"127.0.0.2:{free_port()}"  # a cluster that died and left its address behind
    (ray_tmpdir / "ray" / "ray_current_cluster").write_text(dead)
    env = {"RAY_TMPDIR": str(ray_tmpdir)}
    started = time.monotonic()
    assert_one_line(rledit("train", *DIGITS, "--address", "auto", "--out", tmp_path / "run", env=env, timeout=60),
                    f"no Ray cluster answers at --address auto ({dead}")
    assert time.monotonic() - started < 30
    private = _gcs_addresses(env, [None])
    assert private[0] != dead


def _gcs_addresses(env: dict, addresses: list) -> list[str]:
    """The GCS address ensure_ray(address) ends up at, for each address in turn (one process)."""
    script = ("import sys, ray\nfrom rledit_ray.connect import ensure_ray\n"
              f"for address in {addresses!r}:\n"
              "    ensure_ray(address)\n    print('GCS', ray.get_runtime_context().gcs_address)\n    ray.shutdown()\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180,
                            env={**os.environ, **env})
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    return [line.split()[1] for line in result.stdout.splitlines() if line.startswith("GCS ")]


@pytest.mark.slow  # starts a `ray start --head` cluster (~20 s on 2 busy cores)
def test_next_to_a_running_local_cluster_a_run_stays_private_unless_told(ray_tmpdir):
    with LocalCluster(num_cpus=1) as cluster:
        # What `ray start --head` writes for Ray's default address lookup, here in a private folder.
        (ray_tmpdir / "ray" / "ray_current_cluster").write_text(cluster.gcs_address)
        private, joined = _gcs_addresses({"RAY_TMPDIR": str(ray_tmpdir)}, [None, "auto"])
    assert private != cluster.gcs_address and joined == cluster.gcs_address


# ----------------------------------------------------------------------------- the issue's examples
EXAMPLES = {
    "a config that is not UTF-8": (lambda t: ["train", "--config", t / "latin1.yaml", "--out", t / "run"],
                                   "is not UTF-8 text"),
    "a sweep name that climbs out of --out": (lambda t: ["sweep", t / "escape.yaml", "--out", t / "sweeps"],
                                              "is not a plain folder name"),
    "summarize of a folder that does not exist": (lambda t: ["summarize", t / "nowhere"], "does not exist"),
    "bench --configs ''": (lambda t: ["bench", "--configs", ""], "--configs needs at least one name"),
    "eval --data-root of a missing folder": (lambda t: ["eval", *DIGITS, "--data-root", t / "nowhere"],
                                             "does not exist"),
    "train --env-runners 8 on this machine": (lambda t: ["train", *DIGITS, "--env-runners", str(os.cpu_count() + 6),
                                                         "--out", t / "run"], "CPUs but the Ray cluster has"),
}


@pytest.mark.parametrize("example", EXAMPLES)
def test_the_issue_examples_as_a_terminal_sees_them(example, tmp_path):
    (tmp_path / "latin1.yaml").write_bytes("seed: 1  # café\n".encode("latin-1"))
    smoke = yaml.safe_load((REPO / "tune_configs" / "digits_smoke.yaml").read_text())
    (tmp_path / "escape.yaml").write_text(yaml.safe_dump({**smoke, "name": "../escape"}))
    args, expected = EXAMPLES[example]
    assert_one_line(rledit(*args(tmp_path)), expected)
    assert not (tmp_path / "run").exists() and not (tmp_path / "escape").exists()
