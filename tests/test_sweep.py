"""Tune sweeps: spec validation before any trial, a real sweep, and resume after a kill."""
import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from rledit_ray.errors import UserError
from rledit_ray.sweep import load_spec

REPO = Path(__file__).resolve().parents[1]
SMOKE = yaml.safe_load((REPO / "tune_configs" / "digits_smoke.yaml").read_text())


def write_spec(tmp_path, **changes):
    spec = {**SMOKE, **changes}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.mark.parametrize("changes, message", [
    ({"search_space": {"reward.utility_coeff": {"grid": [1.0]}}}, "search_space: reward.utility_coeff: unknown field"),
    ({"search_space": {}}, "search_space is empty"),
    ({"search_space": {"rank": {"grid": []}}}, "grid is empty"),
    ({"scheduler": "hyperband"}, "scheduler.name: Input should be 'none' or 'asha'"),
    ({"schedular": "asha"}, "schedular: unknown field"),
    ({"search_space": {"world": {"grid": ["teleport"]}}}, "unknown world 'teleport'"),
    ({"base": {"rank": 0}}, "rank must be >= 1"),
])
def test_bad_specs_fail_before_any_trial(changes, message, tmp_path):
    with pytest.raises(UserError, match=message):
        load_spec(write_spec(tmp_path, **changes))


def test_every_shipped_spec_is_valid():
    for path in sorted((REPO / "tune_configs").glob("*.yaml")):
        spec, base = load_spec(path)
        assert spec.search_space, path


def test_cli_reports_a_bad_spec_in_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "rledit_ray", "sweep", str(write_spec(tmp_path, search_space={})),
                             "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "search_space is empty" in result.stderr


def _rows(out: Path) -> list[dict]:
    with open(out / "summary.csv") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_sweep_killed_midway_resumes_without_redoing_finished_trials(tmp_path):
    spec = write_spec(tmp_path, max_concurrent_trials=1,
                      search_space={"reward.utility_coef": {"grid": [1.0, 2.0, 4.0]}})
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "rledit_ray", "sweep", str(spec), "--out", str(out)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    driver = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    experiment = out / SMOKE["name"]
    try:
        deadline = time.time() + 400
        while time.time() < deadline and not list(experiment.glob("trial_*/run/metrics.json")):
            assert driver.poll() is None, "the sweep ended before it could be interrupted"
            time.sleep(1)
        finished = list(experiment.glob("trial_*/run/metrics.json"))
        assert len(finished) == 1, "first trial did not finish in time"
        time.sleep(6)  # longer than the experiment-state save period
        first_mtime = finished[0].stat().st_mtime
    finally:
        os.killpg(driver.pid, signal.SIGKILL)  # the driver and everything it started
        driver.wait()
    assert not (out / "summary.csv").exists()

    resumed = subprocess.run(cmd + ["--resume"], env=env, capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    rows = _rows(out)
    assert sorted(float(r["reward.utility_coef"]) for r in rows) == [1.0, 2.0, 4.0]  # each exactly once
    assert all(r["status"] == "finished" for r in rows)
    assert finished[0].stat().st_mtime == first_mtime  # the finished trial was not run again
    for name in ("summary.md", "metric_vs_swept.png", "pareto.png", "learning_curves.png"):
        assert (out / name).exists(), name
