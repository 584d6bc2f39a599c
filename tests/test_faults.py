"""Surviving faults: a killed EnvRunner is restarted and the run finishes; a half-written
checkpoint (`checkpoint.tmp`) is never trusted."""
import json
import os
import signal
import threading

import pytest

from rledit_ray.config import build_config
from rledit_ray.training import train

FAULT_RUN = {
    "dataset": "digits",
    "forget_classes": [3],
    "samples": {"per_set": 64},
    "agent": {"num_env_runners": 2, "train_batch_size": 200, "minibatch_size": 100, "num_epochs": 2},
    "training": {"iterations": 4, "stop_forget_acc": None, "stop_retain_acc": None},
}


def _env_runners() -> list[dict]:
    # GCS actor table: works without the dashboard (the state API needs it).
    from ray._private.state import actors

    return [a for a in actors().values() if a["ActorClassName"] == "SingleAgentEnvRunner"]


@pytest.mark.slow
def test_training_survives_a_killed_env_runner(tmp_path, ray_local):
    killed, lines = [], []

    def progress(line: str) -> None:
        lines.append(line)
        if line.startswith("iter   1/"):  # between iteration 1 and 2: SIGKILL one runner
            victim = next(a for a in _env_runners() if a["State"] == "ALIVE")
            os.kill(victim["Pid"], signal.SIGKILL)
            killed.append(victim)

    metrics = train(build_config(FAULT_RUN), tmp_path / "run", progress=progress)

    assert killed, lines
    assert metrics["iterations"] == 4 and [h["iteration"] for h in metrics["history"]] == [1, 2, 3, 4]
    steps = [h["env_steps"] for h in metrics["history"]]
    assert steps == sorted(steps) and metrics["env_steps"] >= 4 * 200, steps
    for when in ("before", "after"):
        assert 0.0 <= metrics[when]["forget_acc"] <= 1.0 and 0.0 <= metrics[when]["retain_acc"] <= 1.0
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["iterations"] == 4
    # Ray restarted the same actor in a new process (RLlib then re-synced its weights).
    again = next(a for a in _env_runners() if a["ActorID"] == killed[0]["ActorID"])
    assert again["NumRestarts"] >= 1 and again["Pid"] != killed[0]["Pid"]


def test_a_leftover_tmp_checkpoint_is_never_trusted(tmp_path):
    """A kill during `_save_checkpoint_atomically` leaves `checkpoint.tmp`; readers only
    ever open `checkpoint/`, and the next save replaces the leftover."""
    from rledit_ray.editing import CONFIG_NAME, find_checkpoint
    from rledit_ray.errors import UserError
    from rledit_ray.training import _save_checkpoint_atomically

    ckpt = tmp_path / "checkpoint"
    half = tmp_path / "checkpoint.tmp"  # complete-looking, but never renamed into place
    half.mkdir()
    (half / CONFIG_NAME).write_text("seed: 0\n")
    (half / "junk").write_text("half written")
    with pytest.raises(UserError):
        find_checkpoint(tmp_path)  # the run dir has no checkpoint: .tmp is not a fallback

    class FakeAlgo:
        def save_to_path(self, path):
            os.makedirs(path, exist_ok=True)
            (tmp_path / "saved_to").write_text(path)
            with open(os.path.join(path, "algorithm_state.pkl"), "w") as f:
                f.write("ok")

    _save_checkpoint_atomically(FakeAlgo(), ckpt, {"seed": 0})
    assert (ckpt / "algorithm_state.pkl").read_text() == "ok"
    assert not (ckpt / "junk").exists()  # the leftover did not leak in
    assert not half.exists() and not (tmp_path / "checkpoint.old").exists()


def test_a_killed_save_keeps_the_previous_checkpoint(tmp_path):
    from rledit_ray.training import _save_checkpoint_atomically

    class Algo:
        def __init__(self, fail=False):
            self.fail = fail

        def save_to_path(self, path):
            os.makedirs(path, exist_ok=True)
            with open(os.path.join(path, "state"), "w") as f:
                f.write("new" if not self.fail else "partial")
            if self.fail:
                raise KeyboardInterrupt  # the process dies in the middle of saving

    ckpt = tmp_path / "checkpoint"
    _save_checkpoint_atomically(Algo(), ckpt, {})
    with pytest.raises(KeyboardInterrupt):
        _save_checkpoint_atomically(Algo(fail=True), ckpt, {})
    assert (ckpt / "state").read_text() == "new"


def test_metrics_json_is_replaced_whole(tmp_path, monkeypatch):
    """write_json goes through a temporary file and a rename: readers see old or new."""
    from rledit_ray import atomic as report

    path = tmp_path / "metrics.json"
    report.write_json(path, {"a": 1})
    seen = []
    stop = threading.Event()

    def reader():
        while not stop.is_set():
            seen.append(path.read_text())

    t = threading.Thread(target=reader)
    t.start()
    for i in range(200):
        report.write_json(path, {"a": i, "pad": "x" * 20000})
    stop.set()
    t.join()
    for text in seen:
        json.loads(text)  # never a torn file
    assert not [p for p in tmp_path.iterdir() if p.name != "metrics.json"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    from rledit_ray import atomic

    path = tmp_path / "state.json"
    atomic.write_json(path, {"a": 1})

    class Unwritable:
        def __float__(self):
            raise RuntimeError("serialisation failed halfway")

    with pytest.raises(RuntimeError):
        atomic.write_json(path, {"a": 2, "bad": Unwritable()})
    with pytest.raises(ZeroDivisionError):
        atomic.replace_folder(tmp_path / "ckpt", lambda tmp: (tmp.mkdir(), (tmp / "x").write_text("1"), 1 / 0))
    assert json.loads(path.read_text()) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


@pytest.mark.slow
def test_an_unfinished_run_resumes_from_its_checkpoint(tmp_path, ray_local):
    import yaml

    from rledit_ray.cli import main

    cfg = {**FAULT_RUN, "agent": {**FAULT_RUN["agent"], "num_env_runners": 0}, "training": {
        **FAULT_RUN["training"], "iterations": 2}}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(cfg))
    run = tmp_path / "run"
    assert main(["train", "--config", str(tmp_path / "run.yaml"), "--out", str(run)]) == 0
    first = json.loads((run / "metrics.json").read_text())
    (run / "metrics.json").unlink()  # as if the driver had been killed before the end

    assert main(["train", "--resume", str(run), "--iterations", "4"]) == 0
    m = json.loads((run / "metrics.json").read_text())
    saved = first["best_iteration"]
    assert [h["iteration"] for h in m["history"]] == [1, 2, 3, 4]
    assert m["history"][:saved] == first["history"][:saved]  # kept, not retrained
    steps = [h["env_steps"] for h in m["history"]]
    assert steps == sorted(steps) and steps[-1] > first["history"][saved - 1]["env_steps"], steps


def test_resume_needs_an_unfinished_run(tmp_path, capsys):
    from rledit_ray.cli import main

    assert main(["train", "--resume", str(tmp_path / "nothing")]) == 2
    assert "does not exist" in capsys.readouterr().err
