"""Measure `ray job submit` overhead and 1-node vs 2-node steps/s on this machine.

    RAY_AUTH_MODE=disabled python cluster/measure_local.py [--iterations 6] [--out /tmp/rledit-measure]

Runs the same short digits training three ways, one after the other:
  direct   `rledit train` with a private local Ray (2 EnvRunners);
  1 node   `ray job submit` to a local head with 2 CPUs (both EnvRunners on it);
  2 nodes  `ray job submit` to a head with 1 CPU plus a second node with 1 CPU (1 + 1).
Prints one JSON object. Timings on a shared machine are noisy: compare runs of one call.
"""
from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import time
from pathlib import Path

import yaml

from rledit_ray.cluster_utils import LocalCluster, ray_env

CONFIG = {
    "dataset": "digits", "forget_classes": [3], "samples": {"per_set": 64},
    "agent": {"train_batch_size": 400, "minibatch_size": 100, "num_epochs": 4},
    "training": {"stop_forget_acc": None, "stop_retain_acc": None},
}


def _summary(run: Path) -> dict:
    m = json.loads((run / "metrics.json").read_text())
    rates = [h["env_steps_per_s"] for h in m["history"][1:]]  # iteration 1 includes warm-up
    return {"env_steps": m["env_steps"], "train_wall_s": round(m["wall_time_s"], 1),
            "median_env_steps_per_s": round(statistics.median(rates), 1)}


def direct(root: Path, args: list[str]) -> dict:
    run = root / "direct"
    t0 = time.time()
    subprocess.run(["rledit", "train", *args, "--out", str(run)], env=ray_env(), check=True,
                   capture_output=True, text=True)
    return {"total_s": round(time.time() - t0, 1), **_summary(run)}


def submitted(root: Path, name: str, args: list[str], nodes: list[int]) -> dict:
    run, stamp = root / name, root / f"{name}.driver_start"
    with LocalCluster(num_cpus=nodes[0]) as cluster:
        for cpus in nodes[1:]:
            cluster.add_node(num_cpus=cpus)
        t0 = time.time()
        # One shell string: `ray job submit -- a b` quotes each word, so `>` and `&&` would be literal.
        script = f"date +%s.%N > {shlex.quote(str(stamp))} && {shlex.join(['rledit', 'train', *args, '--out', str(run)])}"
        job = cluster.submit(["sh", "-c", script], working_dir=root / "job")
        state = cluster.wait(job, timeout=900, poll=0.5)
        total = time.time() - t0
        if state != "SUCCEEDED":
            raise SystemExit(cluster.logs(job)[-2000:])
        return {"nodes_cpus": nodes, "submit_to_driver_start_s": round(float(stamp.read_text()) - t0, 2),
                "total_s": round(total, 1), **_summary(run)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--iterations", type=int, default=6)
    p.add_argument("--out", default="/tmp/rledit-measure")
    a = p.parse_args()
    root = Path(a.out).resolve() / time.strftime("%Y%m%d-%H%M%S")
    (root / "job").mkdir(parents=True)
    (root / "job" / "fast.yaml").write_text(yaml.safe_dump(CONFIG))
    args = ["--config", str(root / "job" / "fast.yaml"), "--env-runners", "2", "--iterations", str(a.iterations)]
    results = {"direct": direct(root, args),
               "job_1_node": submitted(root, "one", args, [2]),
               "job_2_nodes": submitted(root, "two", args, [1, 1])}
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
