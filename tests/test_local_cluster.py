"""A real 2-node Ray cluster on loopback, a training submitted with `ray job submit`.

Two raylets (`ray start --head` + `ray start --address=...`), one CPU each: the two
EnvRunners (one CPU each) can only run one per node, and the test checks they did. The
commands are the ones cluster/README.md documents.
"""
import csv
import json
from pathlib import Path

import pytest
import yaml
from conftest import FAST_JOB

from rledit_ray.cluster_utils import LocalCluster

ROOT = Path(__file__).resolve().parents[1]



@pytest.mark.slow
def test_job_submit_on_a_two_node_local_cluster(tmp_path):
    job_dir = tmp_path / "job"  # the --working-dir: only what the job needs, not the repo
    job_dir.mkdir()
    (job_dir / "fast.yaml").write_text(yaml.safe_dump(FAST_JOB))
    run = tmp_path / "run"  # absolute: the driver runs in a temporary working directory

    empty_cache = tmp_path / "node2-cache"  # the second machine shares no cache with the head
    cluster = LocalCluster(num_cpus=1)
    try:
        cluster.add_node(num_cpus=1, resources={"node2": 1}, env={"RLEDIT_CACHE_DIR": str(empty_cache)})
        nodes = cluster.node_ids()
        assert len(nodes) == 2
        job = cluster.submit(["rledit", "train", "--config", "fast.yaml", "--env-runners", "2",
                              "--seed", "3", "--out", str(run)], working_dir=job_dir)
        state = cluster.wait(job, timeout=400)
        assert state == "SUCCEEDED", cluster.logs(job)[-3000:]

        m = json.loads((run / "metrics.json").read_text())
        assert m["seed"] == 3 and m["iterations"] == 2 and m["env_steps"] >= 400
        assert 0.0 <= m["after"]["forget_acc"] <= 1.0
        assert "after:" in cluster.logs(job)  # the driver's progress lines reach the job log

        runners = cluster.actors("SingleAgentEnvRunner")
        assert len(runners) == 2, runners
        assert {a["node_id"] for a in runners} == set(nodes)  # one EnvRunner on each node

        # Every process that built worlds said once which device they use: the driver in
        # the job log, each EnvRunner (no GPU given: pinned to cpu) in its worker log.
        assert "worlds in process" in cluster.logs(job)
        worker_logs = [p.read_text(errors="replace") for p in Path(cluster.temp_dir).glob("n*/session_*/logs/worker-*.err")]
        said = {line for text in worker_logs for line in text.splitlines() if "worlds in process" in line}
        assert len(said) == 2 and all("use cpu (device: cpu)" in line for line in said), said  # one per runner
        # Each runner built its worlds over the driver's target, checked by its fingerprint,
        # and the node with the empty cache trained nothing.
        got = {line.split("target ")[1].split()[0] for text in worker_logs for line in text.splitlines()
               if line.startswith("EnvRunner process")}
        assert got == {m["target"]["fingerprint"]}, got
        assert not (empty_cache / "targets").exists()
    finally:
        cluster.stop()


@pytest.mark.slow
def test_a_sweep_on_a_second_node_brings_every_trial_home(tmp_path):
    """Every trial runs on the second node (the head has no CPU for trials) with a cache of its
    own: each trial's run directory still reaches --out on the head, the summary has every
    trial's metrics, and only the driver built the target."""
    head_cache, node_cache = tmp_path / "head-cache", tmp_path / "node2-cache"
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    (job_dir / "smoke.yaml").write_text((ROOT / "tune_configs" / "digits_smoke.yaml").read_text())
    out = tmp_path / "sweep"
    cluster = LocalCluster(num_cpus=0, head_env={"RLEDIT_CACHE_DIR": str(head_cache)})
    try:
        cluster.add_node(num_cpus=2, env={"RLEDIT_CACHE_DIR": str(node_cache)})
        head, second = cluster.node_ids()
        job = cluster.submit(["rledit", "sweep", "smoke.yaml", "--out", str(out)], working_dir=job_dir)
        state = cluster.wait(job, timeout=500)
        assert state == "SUCCEEDED", cluster.logs(job)[-3000:]
        trials = cluster.actors("ImplicitFunc")
        assert len(trials) == 2 and {t["node_id"] for t in trials} == {second}, trials
        with open(out / "summary.csv") as f:
            rows = list(csv.DictReader(f))
        assert len(rows) == 2
        for row in rows:
            assert row["status"] == "finished" and row["forget_acc"] and row["retain_acc"], row
            run = out / "digits-smoke" / row["trial"] / "run"
            for name in ("metrics.json", "edited_weights.safetensors", "report.md", "checkpoint"):
                assert (run / name).exists(), run / name
        assert list((head_cache / "targets").glob("*.safetensors"))  # the driver trained it
        assert not (node_cache / "targets").exists()  # the trials' node trained nothing
    finally:
        cluster.stop()
