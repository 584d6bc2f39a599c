"""Progress: a bar on a terminal, plain lines (no carriage returns) anywhere else.

Both halves run a real verb, `rledit eval` on digits with an empty cache (so it trains the
target CNN, the loop that reports progress), once with pipes and once on a pseudo-terminal.
"""
import fcntl
import logging
import os
import pty
import struct
import subprocess
import sys
import termios

import pytest

from rledit_ray import progress

EVAL = [sys.executable, "-m", "rledit_ray", "eval", "--dataset", "digits", "--forget-class", "3"]


def _env(tmp_path) -> dict:
    return {**os.environ, "RLEDIT_CACHE_DIR": str(tmp_path / "empty-cache"), "PYTHONUNBUFFERED": "1"}


def test_eval_off_a_terminal_prints_plain_lines(tmp_path):
    done = subprocess.run(EVAL, capture_output=True, text=True, timeout=600, env=_env(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "\r" not in done.stdout + done.stderr
    assert "target training: 30/30 epoch | done in" in done.stdout  # the loop's one closing line
    assert "forget_acc" in done.stdout


def test_eval_on_a_terminal_draws_a_bar(tmp_path):
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a terminal has a size
    child = subprocess.Popen(EVAL, stdin=subprocess.DEVNULL, stdout=terminal, stderr=terminal, env=_env(tmp_path))
    os.close(terminal)
    seen = b""
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    os.close(controller)
    assert child.wait(timeout=600) == 0, seen[-2000:]
    text = seen.decode(errors="replace")
    # a redraw: a carriage return straight before the bar (the terminal itself adds one only
    # before each newline)
    assert "\rtarget training: 100%" in text and "30/30" in text
    assert "target training: 30/30 epoch | done in" not in text  # a bar, not the plain line


def test_plain_lines_are_throttled_and_end_with_a_summary(monkeypatch, caplog):
    monkeypatch.setattr(progress, "on_terminal", lambda: False)
    caplog.set_level(logging.INFO, logger="rledit_ray.progress")
    monkeypatch.setattr(progress, "LINE_EVERY_S", 3600.0)
    with progress.Progress("quiet loop", total=50, unit="step") as bar:
        for _ in range(50):
            bar.update(loss="0.1")
    assert len(caplog.records) == 1
    assert caplog.records[0].getMessage().startswith("quiet loop: 50/50 step | done in ")
    caplog.clear()
    monkeypatch.setattr(progress, "LINE_EVERY_S", 0.0)
    list(progress.track(range(3), "busy loop", unit="row"))
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("busy loop: 1/3 row | 33%") and "left" in lines[0]
    assert len(lines) == 4 and lines[-1].startswith("busy loop: 3/3 row | done in")


def test_a_loop_with_its_own_lines_adds_none(monkeypatch, caplog):
    monkeypatch.setattr(progress, "on_terminal", lambda: False)
    monkeypatch.setattr(progress, "LINE_EVERY_S", 0.0)
    caplog.set_level(logging.INFO, logger="rledit_ray.progress")
    printed = []
    with progress.Progress("PPO", total=2, lines=False) as bar:
        say = bar.printer(printed.append)
        for it in (1, 2):
            bar.update()
            say(f"iter {it}")
    assert printed == ["iter 1", "iter 2"] and caplog.records == []


@pytest.mark.parametrize("seconds, text", [(5.2, "5 s"), (75, "1 min 15 s"), (3 * 3600 + 120, "3 h 02 min")])
def test_clock(seconds, text):
    assert progress._clock(seconds) == text
