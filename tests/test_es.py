"""Evolution strategies (agent/es.py): the estimator, and whole runs on real Ray EnvRunners."""
import json

import numpy as np
import pytest
import yaml
from conftest import FAST_DIGITS

from rledit_ray.agent.es import centred_ranks, es_gradient
from rledit_ray.build import build_world
from rledit_ray.cli import main
from rledit_ray.config import build_config
from rledit_ray.worlds import WorldBatch

# ES on digits' hidden layer (64 x 257 with its bias: 321 action dims), small populations.
FAST_ES = {**FAST_DIGITS, "edit": ["fc1"],
           "agent": {"algorithm": "es", "es_population": 6, "num_envs_per_env_runner": 2},
           "training": {"iterations": 2, "stop_forget_acc": None, "stop_retain_acc": None}}


def test_centred_ranks_ignore_the_returns_scale():
    returns = np.array([3.0, -1.0, 10.0, 0.5])
    ranks = centred_ranks(returns)
    assert ranks == pytest.approx([1 / 6, -0.5, 0.5, -1 / 6])  # ranks 2, 0, 3, 1 of 0..3
    assert np.array_equal(centred_ranks(100 * returns - 7), ranks)


def test_es_gradient_points_uphill():
    """On -|theta - goal|^2 the antithetic estimate agrees with the true gradient's direction."""
    rng = np.random.default_rng(0)
    theta, goal, sigma = np.zeros(20), rng.standard_normal(20), 0.1
    directions = rng.standard_normal((64, 20))

    def returns(sign):
        return np.array([-np.sum((theta + sign * sigma * e - goal) ** 2) for e in directions])

    g = es_gradient(directions, returns(+1), returns(-1), sigma)
    true = goal - theta
    assert g @ true / (np.linalg.norm(g) * np.linalg.norm(true)) > 0.7
    assert es_gradient(directions, returns(-1), returns(+1), sigma) @ true < 0  # and the sign matters


@pytest.fixture(scope="module")
def es_run(tmp_path_factory, ray_local):
    """Two ES iterations on a remote EnvRunner with two sub-envs (6 candidates: 3 batches),
    each iteration on its own reward sample set (samples.folds 2)."""
    root = tmp_path_factory.mktemp("es")
    (root / "es.yaml").write_text(yaml.safe_dump({**FAST_ES, "samples": {"per_set": 64, "folds": 2}}))
    run = root / "run"
    assert main(["train", "--config", str(root / "es.yaml"), "--out", str(run), "--env-runners", "1"]) == 0
    return run


def test_an_es_run_counts_every_candidate_episode(es_run):
    m = json.loads((es_run / "metrics.json").read_text())
    cfg = yaml.safe_load((es_run / "config.yaml").read_text())
    assert cfg["agent"]["algorithm"] == "es"
    per_iteration = 6 * m["episode_length"]  # every candidate runs one whole episode
    assert [h["env_steps"] for h in m["history"]] == [per_iteration, 2 * per_iteration]
    assert all(np.isfinite(h["episode_return_mean"]) and h["es_step_rms"] > 0 for h in m["history"])
    assert "- ES: ES step (RMS, action units) per iteration: median" in (es_run / "report.md").read_text()


def test_an_es_checkpoint_serves_its_edit_exactly(es_run, tmp_path):
    out = tmp_path / "edited"
    assert main(["edit", "--checkpoint", str(es_run), "--out", str(out)]) == 0
    replay = json.loads((out / "metrics.json").read_text())["after"]
    assert replay == pytest.approx(json.loads((es_run / "metrics.json").read_text())["after"])


def test_an_es_run_logs_its_search_to_tensorboard(es_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    board = EventAccumulator(str(es_run / "tb")).Reload()
    assert {"learner/es_fitness_std", "learner/es_step_rms"} <= set(board.Tags()["scalars"])
    steps = board.Scalars("learner/es_step_rms")
    assert all(s.value > 0 for s in steps)  # theta moved every iteration


def _fold_rewards(world, action, folds) -> list[float]:
    rewards = []
    for k in folds:
        world.use_reward_fold(k)
        world.reset(seed=0)
        rewards.append(world.step(action)[1])
    return rewards


def test_each_reward_fold_scores_on_its_own_samples():
    """samples.folds 3: the same edit earns another reward on each set, the same one again when
    its set comes back, set k is the set of a run without folds seeded as build.fold_seeds
    says, and a batch of worlds agrees with a world alone."""
    from rledit_ray.build import fold_seeds

    settings = {**FAST_ES, "samples": {"per_set": 32, "folds": 3}, "episode_length": 1}
    cfg = build_config(settings)
    world = build_world(cfg)
    action = np.random.default_rng(0).uniform(-1, 1, world.action_space.shape).astype(np.float32)
    first, second, third, again = _fold_rewards(world, action, [0, 1, 2, 0])
    assert len({round(r, 6) for r in (first, second, third)}) == 3
    assert again == pytest.approx(first, abs=1e-6)
    alone = build_world(build_config({**settings, "samples": {"per_set": 32}, "seed": fold_seeds(cfg)[1]}))
    assert _fold_rewards(alone, action, [0]) == pytest.approx([third], abs=1e-6)
    batch = WorldBatch(lambda: build_world(cfg), 2)
    batch.use_reward_fold(2)
    batch.reset(seed=0)
    assert batch.step(np.stack([action, action]))[1] == pytest.approx([third, third], abs=1e-5)
    with pytest.raises(ValueError, match="fold 3"):
        world.use_reward_fold(3)


def test_reward_folds_without_es_get_one_line(tmp_path, capsys):
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({**FAST_DIGITS, "samples": {"per_set": 64, "folds": 2}}))
    assert main(["train", "--config", str(tmp_path / "bad.yaml"), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert "samples.folds" in err and "agent.algorithm es" in err and "\n" not in err


@pytest.mark.slow
def test_es_forgets_through_the_hidden_layer(tmp_path, ray_local):
    """The point of ES: digits' fc1 edit is learned (PPO's ratio over 321 dims struggles)."""
    cfg = {**FAST_ES, "samples": {"per_set": 128}, "agent": {"algorithm": "es"},
           "training": {"iterations": 20, "stop_forget_acc": 0.0, "stop_retain_acc": 0.95}}
    (tmp_path / "es.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train", "--config", str(tmp_path / "es.yaml"), "--out", str(tmp_path / "run")]) == 0
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    before, after = m["before"], m["after"]
    assert after["forget_acc"] <= 0.5 * before["forget_acc"], (before, after)
    assert after["retain_acc"] >= before["retain_acc"] - 0.05, (before, after)


def test_es_in_a_factor_basis_learns_and_serves_its_edit(tmp_path, ray_local):
    """fc1 through 8 directions per side (32 action values at rank 2): the run improves on
    its reward samples, and its checkpoint replays the same edit (the bases are rebuilt)."""
    cfg = {**FAST_ES, "factor_basis": 8, "rank": 2, "world": "shift",
           "agent": {"algorithm": "es", "es_population": 8}, "training": {**FAST_ES["training"], "iterations": 3}}
    (tmp_path / "es.yaml").write_text(yaml.safe_dump(cfg))
    run = tmp_path / "run"
    assert main(["train", "--config", str(tmp_path / "es.yaml"), "--out", str(run)]) == 0
    m = json.loads((run / "metrics.json").read_text())
    assert m["history"][-1]["episode_return_mean"] > m["history"][0]["episode_return_mean"]
    assert main(["edit", "--checkpoint", str(run), "--out", str(tmp_path / "edited")]) == 0
    assert json.loads((tmp_path / "edited" / "metrics.json").read_text())["after"] == pytest.approx(m["after"])


@pytest.mark.parametrize("agent, message", [
    ({"algorithm": "es", "es_population": 5}, "es_population"),
    ({"algorithm": "sgd"}, "algorithm"),
])
def test_bad_es_settings_get_one_line(agent, message, tmp_path, capsys):
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({**FAST_DIGITS, "agent": agent}))
    assert main(["train", "--config", str(tmp_path / "bad.yaml"), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and not (tmp_path / "run").exists()


def test_a_generalist_with_es_is_refused(tmp_path, capsys, ray_local):
    from conftest import FAST_GENERALIST

    (tmp_path / "g.yaml").write_text(yaml.safe_dump({**FAST_GENERALIST, "agent": {"algorithm": "es"}}))
    assert main(["train", "--config", str(tmp_path / "g.yaml"), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert "generalist" in err and "ppo" in err and not (tmp_path / "run").exists()


@pytest.mark.slow
def test_an_unfinished_es_run_resumes_from_its_checkpoint(tmp_path, ray_local):
    cfg = {**FAST_ES, "agent": {"algorithm": "es", "es_population": 6}}
    (tmp_path / "es.yaml").write_text(yaml.safe_dump(cfg))
    run = tmp_path / "run"
    assert main(["train", "--config", str(tmp_path / "es.yaml"), "--out", str(run)]) == 0
    first = json.loads((run / "metrics.json").read_text())
    (run / "metrics.json").unlink()  # as if the driver had been killed before the end
    assert main(["train", "--resume", str(run), "--iterations", "3"]) == 0
    m = json.loads((run / "metrics.json").read_text())
    saved = first["best_iteration"]
    assert [h["iteration"] for h in m["history"]] == [1, 2, 3] and m["algorithm"] == "es"
    assert m["history"][:saved] == first["history"][:saved]  # kept, not retrained
    assert m["env_steps"] == first["history"][saved - 1]["env_steps"] + (3 - saved) * 6 * m["episode_length"]


@pytest.mark.slow
def test_a_sweep_searches_es_settings(tmp_path):
    """Tune trials are `rledit train` runs: an ES setting is one more search dimension."""
    import csv
    import subprocess
    import sys

    spec = {"name": "es-sigma", "base": {**FAST_ES, "agent": {"algorithm": "es", "es_population": 4}},
            "search_space": {"agent.es_sigma": {"grid": [0.05, 0.2]}}, "scheduler": "none",
            "max_concurrent_trials": 1}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    done = subprocess.run([sys.executable, "-m", "rledit_ray", "sweep", str(tmp_path / "spec.yaml"), "--out",
                           str(tmp_path / "out")], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    with open(tmp_path / "out" / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted(float(r["agent.es_sigma"]) for r in rows) == [0.05, 0.2]
    assert all(r["status"] == "finished" for r in rows)
