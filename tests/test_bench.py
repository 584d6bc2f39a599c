"""`rledit bench` end to end on digits: real worlds, real RLlib EnvRunners, one PPO iteration."""
import json
import subprocess
import sys

import pytest

from rledit_ray.bench import format_tables
from rledit_ray.cli import main

TINY = ["bench", "--dataset", "digits", "--configs", "default", "--runners", "0", "--envs", "1,2",
        "--samples", "16", "--repeats", "2", "--seconds", "0.05", "--ppo-iterations", "1"]


def test_json_report_has_every_measure(ray_local, capsys):
    assert main([*TINY, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)  # stdout holds only the JSON object
    (cfg,) = result["configs"]
    assert cfg["name"] == "default"
    assert cfg["limit_steps_per_s"] > cfg["world_steps_per_s"] > 0
    assert cfg["settings"]["edit"] == ["fc2.weight", "fc2.bias"]
    measured = {(r["runners"], r["envs_per_runner"], r["vectorize"]) for r in cfg["rllib"]}
    assert measured == {(0, 1, "batched"), (0, 2, "batched"), (0, 2, "sync")}
    assert cfg["rllib_steps_per_s"] == max(r["rllib_steps_per_s"] for r in cfg["rllib"]) > 0
    assert [b["envs"] for b in cfg["batches"]] == [2]
    assert [s["samples_per_set"] for s in cfg["samples_scaling"]] == [16]
    assert cfg["ppo_iteration"]["total_s"] > 0

    # What `rledit bench` prints without --json.
    out = format_tables(result)
    assert "| limit (suffix forward pass alone) |" in out
    assert "Per-step overhead beyond the forward pass" in out
    assert "| 0 | 2 | sync |" in out


@pytest.mark.parametrize("flags, message", [
    (["--configs", "huge"], "unknown bench config 'huge'"),
    (["--envs", "0"], "--envs needs a comma-separated list of positive integers"),
    (["--runners", "64"], "--runners 64 needs that many CPUs"),
    (["--envs", "two"], "expected comma-separated integers"),
])
def test_bad_options_get_one_line(flags, message, capsys):
    assert main(["bench", *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_world_only_runs_where_ray_is_not_installed():
    """--world-only measures limit, worlds and scaling without Ray (e.g. a GPU box without it)."""
    code = ("import sys, json; sys.modules['ray'] = None  # any import of ray now fails\n"
            "from rledit_ray.cli import main\n"
            f"sys.exit(main({[*TINY, '--world-only', '--device', 'cpu', '--json']!r}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    (cfg,) = json.loads(done.stdout)["configs"]
    assert cfg["world_steps_per_s"] > 0 and cfg["settings"]["device"] == "cpu"
    assert cfg["rllib"] == [] and cfg["rllib_steps_per_s"] is None and cfg["ppo_iteration"] is None
    out = format_tables({"configs": [cfg], "repeats": 2, "seconds_per_repeat": 0.05})
    assert "world (1 env, no Ray)" in out and "RLlib runners" not in out
