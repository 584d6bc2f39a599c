"""What a run leaves for a user's tools: TensorBoard events, figures, a model card, a
comparison's scatter, and output without bar noise off a terminal.

One real `rledit train` of the fast digits edit runs in a subprocess with pipes for stdout
and stderr (no terminal, as under CI or `ray job logs`); every test of this module reads that
one finished run.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import FAST_DIGITS

REPO = Path(__file__).resolve().parents[1]
ITERATION_TAGS = ("train/episode_return_mean", "train/env_steps_per_s", "validation/forget_val_acc",
                  "validation/retain_val_acc", "validation/selection_score", "learner/clip_fraction",
                  "learner/mean_abs_log_ratio", "learner/mean_kl_loss", "learner/vf_explained_var",
                  "learner/policy_loss", "learner/vf_loss", "learner/entropy", "env_runners/episode_len_mean")


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("eco")
    (root / "fast.yaml").write_text(yaml.safe_dump(FAST_DIGITS))
    run = root / "run"
    done = subprocess.run([sys.executable, "-m", "rledit_ray", "train", "--config", str(root / "fast.yaml"),
                           "--out", str(run), "--seed", "1"], capture_output=True, text=True, timeout=900,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    return {"run": run, "stdout": done.stdout, "stderr": done.stderr,
            "metrics": json.loads((run / "metrics.json").read_text())}


def events(folder: Path):
    """The scalars TensorBoard itself reads from `folder` (its own event reader)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    acc.Reload()
    return acc


# ----------------------------------------------------------------------------- progress
def test_train_off_a_terminal_prints_lines_without_carriage_returns(cli_run):
    out = cli_run["stdout"] + cli_run["stderr"]
    assert "\r" not in out
    assert "iter   3/3" in cli_run["stdout"] and "after: forget" in cli_run["stdout"]


# ----------------------------------------------------------------------------- tensorboard
def test_tensorboard_reads_every_iteration_of_the_run(cli_run):
    m = cli_run["metrics"]
    acc = events(cli_run["run"] / "tb")
    tags = set(acc.Tags()["scalars"])
    assert set(ITERATION_TAGS) <= tags, set(ITERATION_TAGS) - tags
    returns = acc.Scalars("train/episode_return_mean")
    # x axis: env steps sampled so far, one point per iteration, values as in metrics.json
    assert [e.step for e in returns] == [h["env_steps"] for h in m["history"]]
    assert [e.value for e in returns] == pytest.approx([h["episode_return_mean"] for h in m["history"]], rel=1e-5)
    scores = acc.Scalars("validation/selection_score")
    assert [e.value for e in scores] == pytest.approx([h["selection_score"] for h in m["history"]], abs=1e-6)
    clip = [e.value for e in acc.Scalars("learner/clip_fraction")]
    assert len(clip) == m["iterations"] and all(0.0 <= c <= 1.0 for c in clip)
    final = acc.Scalars("test/forget_acc")
    assert [e.step for e in final] == [m["env_steps"]] and final[0].value == pytest.approx(m["after"]["forget_acc"])


def test_a_resumed_log_drops_the_iterations_it_retrains(tmp_path):
    from rledit_ray.tensorboard_log import TensorBoardLog

    board = TensorBoardLog(tmp_path)
    for it in (1, 2, 3):
        board.iteration({"iteration": it, "env_steps": 100 * it, "episode_return_mean": float(it)}, {})
    board.final({"forget_acc": 0.5, "groups": {"a": {}}}, 300)
    TensorBoardLog(tmp_path, retrain_from=2).iteration({"iteration": 2, "env_steps": 200, "episode_return_mean": -2.0}, {})
    acc = events(tmp_path)
    assert [(e.step, e.value) for e in acc.Scalars("train/episode_return_mean")] == [(100, 1.0), (200, -2.0)]
    assert "test/forget_acc" not in acc.Tags()["scalars"]  # the old run's final numbers went too


# ----------------------------------------------------------------------------- figures, report, card
def test_report_shows_every_figure_and_each_is_a_png(cli_run):
    run = cli_run["run"]
    report = (run / "report.md").read_text()
    for name in ("curves.png", "class_accuracy.png", "edit.png"):
        assert f"]({name})" in report, name
        data = (run / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, name


def test_per_class_accuracy_adds_up_to_the_run_metrics(cli_run):
    """The bar chart's numbers come from full forward passes; weighted by the test images per
    class they give back the run's forget and retain test accuracy."""
    from rledit_ray.data import load_dataset, unlearning_splits

    m = cli_run["metrics"]
    splits = unlearning_splits(load_dataset("digits"), [3])
    retain_counts = torch.bincount(splits.retain_test.y, minlength=10).numpy()
    for when in ("before", "after"):
        per_class = np.array(m["per_class_test_acc"][when])
        # (the run measures in float32: equal to ~1e-7; one image of ~400 would be 2.5e-3)
        assert per_class[3] == pytest.approx(m[when]["forget_acc"], abs=1e-6)
        assert np.average(per_class, weights=retain_counts) == pytest.approx(m[when]["retain_acc"], abs=1e-6)


def test_model_card_is_in_the_hub_layout_and_holds_the_test_numbers(cli_run):
    run, m = cli_run["run"], cli_run["metrics"]
    text = (run / "README.md").read_text()
    assert text.startswith("---\n") and (run / "edited_weights.safetensors").is_file()
    meta = yaml.safe_load(text.split("---\n")[1])
    assert meta["library_name"] == "pytorch" and "machine-unlearning" in meta["tags"] and meta["metrics"] == ["accuracy"]
    results = meta["model-index"][0]["results"][0]
    assert results["dataset"]["split"] == "test"
    values = {r["name"]: r["value"] for r in results["metrics"]}
    assert values["forget accuracy (test) after the edit"] == pytest.approx(m["after"]["forget_acc"], abs=1e-6)
    assert values["retain accuracy (test) after the edit"] == pytest.approx(m["after"]["retain_acc"], abs=1e-6)
    for section in ("## What was edited", "## By which policy", "## Metrics before and after (held-out test)",
                    "## How to reproduce", "rledit train --config config.yaml"):
        assert section in text, section
    assert "`fc2.weight`, `fc2.bias`" in text and "3 (forgotten)" in text


def test_rledit_edit_writes_a_card_beside_its_weights(cli_run, tmp_path):
    from rledit_ray.cli import main

    out = tmp_path / "edited"
    assert main(["edit", "--checkpoint", str(cli_run["run"]), "--out", str(out)]) == 0
    card = (out / "README.md").read_text()
    meta = yaml.safe_load(card.split("---\n")[1])
    replay = json.loads((out / "metrics.json").read_text())
    value = meta["model-index"][0]["results"][0]["metrics"][0]["value"]
    assert value == pytest.approx(replay["after"]["forget_acc"], abs=1e-6)
    assert "rledit edit --checkpoint" in card


@pytest.mark.parametrize("world", ["mask", "shift"])
def test_edit_heatmap_shows_the_worlds_own_edit_and_frames_the_forgotten_row(world):
    from rledit_ray.build import build_world
    from rledit_ray.config import build_config
    from rledit_ray.run_figures import edit_panels
    from rledit_ray.worlds.rollout import run_episode

    cfg = build_config({**FAST_DIGITS, "world": world, "edit": ["fc1", "fc2.weight"]})
    w = build_world(cfg)
    action = np.random.default_rng(0).uniform(-1, 1, w.action_space.shape).astype(np.float32)
    run_episode(w, lambda obs: action)
    fc1, fc2 = edit_panels(w, [3])
    assert fc1.marked == [] and fc1.row_names is None  # hidden units, not classes
    assert fc2.marked == [3] and fc2.matrix.shape == (10, 64)
    edited, original = w.model.fc2.weight.detach(), w.parts.model.fc2.weight.detach()
    if world == "mask":  # W = W0 * M
        assert torch.allclose(original * torch.from_numpy(fc2.matrix), edited, atol=1e-6) and fc2.centre == 1.0
    else:  # the shift in units of W0's spread
        assert torch.allclose(original + torch.from_numpy(fc2.matrix) * original.std(), edited, atol=1e-5)
        assert fc2.centre == 0.0
    assert np.abs(fc2.matrix - fc2.centre).max() > 0.01


def test_comparison_gets_a_forget_retain_scatter(tmp_path):
    from rledit_ray.compare import run_compare

    out = run_compare(tmp_path / "cmp", dataset="digits", forget_classes=[3], methods=["original", "gradient_ascent"],
                      seeds=1, progress=lambda line: None)
    assert (out / "forget_retain.png").read_bytes()[:4] == b"\x89PNG"
    assert "](forget_retain.png)" in (out / "comparison.md").read_text()


# ----------------------------------------------------------------------------- sweeps
@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """The digits smoke sweep (two trials, one at a time) through the CLI."""
    root = tmp_path_factory.mktemp("sweep")
    spec = yaml.safe_load((REPO / "tune_configs" / "digits_smoke.yaml").read_text())
    spec["max_concurrent_trials"] = 1
    (root / "spec.yaml").write_text(yaml.safe_dump(spec))
    done = subprocess.run([sys.executable, "-m", "rledit_ray", "sweep", str(root / "spec.yaml"),
                           "--out", str(root / "out")], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return root / "out", spec


@pytest.mark.slow
def test_every_sweep_trial_has_its_tensorboard_events(sweep):
    out, spec = sweep
    trials = sorted((out / spec["name"]).glob("trial_*/run"))
    assert len(trials) == 2
    for run in trials:
        m = json.loads((run / "metrics.json").read_text())
        returns = events(run / "tb").Scalars("train/episode_return_mean")
        assert [e.step for e in returns] == [h["env_steps"] for h in m["history"]]


@pytest.mark.slow
def test_with_mlflow_installed_every_trial_is_an_mlflow_run(sweep):
    mlflow = pytest.importorskip("mlflow")  # the optional extra: pip install rledit-ray[mlflow]
    out, spec = sweep
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{out / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name(spec["name"]).experiment_id])
    trials = sorted((out / spec["name"]).glob("trial_*"))
    assert len(runs) == len(trials) == 2
    for trial in trials:  # Tune names a trial's MLflow run after the trial (trial_<id> -> run_trial_<id>)
        run = next(r for r in runs if r.info.run_name.endswith(trial.name))
        history = json.loads((trial / "run" / "metrics.json").read_text())["history"]
        scores = client.get_metric_history(run.info.run_id, "selection_score")
        # each iteration's report, then the trial's final one
        assert [m.value for m in scores][:-1] == pytest.approx([h["selection_score"] for h in history])
