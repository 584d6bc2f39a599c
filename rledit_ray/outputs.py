"""Where a verb may write: output folders are checked before any work and created only after it.

Every verb that writes (train, edit, sweep, compare, compare-requests) names its output
folder with --out. Before anything runs, `check_output` refuses a path that cannot become a
folder (a file, a path below a file, a place without write permission) and a folder that
already holds something the verb must not touch: a finished run is never written into, an
unfinished one only by `rledit train --resume` of that run, and one tool's results never
land in another's folder. `make_output` creates the folder once every check has passed.

`read_run_metrics` reads a finished run's metrics.json (summarize, compare --rl-run) and
names the file when it is not what `rledit train` writes.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from rledit_ray.errors import UserError

# What each kind of folder holds, as `rledit` writes it (dot files are temporaries of atomic.py).
FINISHED_RUN = "a finished run"
UNFINISHED_RUN = "an unfinished run"
EDIT_OUTPUT = "the output of `rledit edit`"
SWEEP = "a sweep"
COMPARISON = "a comparison (`rledit compare`)"
REQUEST_COMPARISON = "a request comparison (`rledit compare-requests`)"
OTHER = "files rledit did not write"
# The keys `rledit summarize` and `compare --rl-run` read from a run's metrics.json, and the
# numbers they format (per task, in `after`).
RUN_METRICS_KEYS = ("task", "world", "seed", "before", "after", "env_steps", "wall_time_s")
RUN_NUMBERS = ("env_steps", "wall_time_s")
AFTER_NUMBERS = {"unlearning": ("forget_acc", "retain_acc")}


def folder_kind(path: Path) -> str | None:
    """What `path` holds, in words; None for a folder that is missing or empty."""
    if not path.is_dir():
        return None
    names = {p.name for p in path.iterdir() if not p.name.startswith(".")}
    if not names:
        return None
    if "config.yaml" in names or "checkpoint" in names:
        return FINISHED_RUN if "metrics.json" in names else UNFINISHED_RUN
    if "metrics.json" in names:
        return EDIT_OUTPUT
    if "summary.json" in names or any((path / n / "tuner.pkl").is_file() for n in names):
        return SWEEP
    if "rows" in names or "comparison.md" in names or "comparison.csv" in names:
        rows = [p.name for p in (path / "rows").glob("*.json")] if (path / "rows").is_dir() else []
        if names == {"rows"} and not rows:  # a comparison killed before its first row
            return None
        return REQUEST_COMPARISON if any("-class" in name for name in rows) else COMPARISON
    return OTHER


def check_output(path: str | Path, flag: str = "--out", accept: tuple[str, ...] = ()) -> Path:
    """The absolute folder `path`, refused (one line) unless it is new, empty, or of a kind in
    `accept`; and unless its nearest existing parent is a folder this process can create
    folders in (tried with an empty folder, made and removed at once)."""
    path = Path(path).expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag} '{path}' is a file: choose a folder")
    parent = path
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"{flag} '{path}' lies below the file '{parent}': choose a folder")
    if not _can_create_in(parent):
        raise UserError(f"{flag} '{path}': cannot create folders in '{parent}' (no permission, a read-only or "
                        f"special file system): choose a folder you can write to")
    kind = folder_kind(path)
    if kind is not None and kind not in accept:
        advice = {FINISHED_RUN: "a finished run is never written into",
                  UNFINISHED_RUN: "continue it with `rledit train --resume` of that folder",
                  SWEEP: "continue it with `rledit sweep SPEC --resume --out` of that folder"}.get(kind, "")
        raise UserError(f"{flag} '{path}' already holds {kind}" + (f" ({advice})" if advice else "")
                        + ": choose a new or empty folder")
    return path


def _can_create_in(folder: Path) -> bool:
    """Whether a folder can be made in `folder`: permission bits do not tell for root, nor on
    read-only or special file systems (/proc), so an empty one is made and removed at once."""
    if not os.access(folder, os.W_OK | os.X_OK):
        return False
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".rledit-check-", dir=folder))
    except OSError:
        return False
    return True


def make_output(path: str | Path, flag: str = "--out") -> Path:
    """Create the folder (and its parents); a place the file system refuses is one line."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"{flag} '{path}' cannot be created: {err.strerror or err}") from None
    return path


def read_run_metrics(run: str | Path, what: str = "run") -> dict:
    """The metrics.json of a finished `rledit train` run, checked for the keys readers use."""
    run = Path(run)
    if not run.exists():
        raise UserError(f"{what} '{run}' does not exist")
    path = run / "metrics.json"
    if not path.is_file():
        raise UserError(f"{what} '{run}' holds no finished run (no metrics.json): finish it with "
                        f"`rledit train --resume {run}`, or name a finished run")
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"'{path}' is not valid JSON ({type(err).__name__}): the run's metrics are damaged") from None
    if not isinstance(metrics, dict):
        raise UserError(f"'{path}' holds a {type(metrics).__name__}, not the metrics of a run")
    missing = [k for k in RUN_METRICS_KEYS if k not in metrics]
    if missing:
        raise UserError(f"'{path}' lacks '{missing[0]}': it is not the metrics.json of an `rledit train` run")
    if not (isinstance(metrics["after"], dict) and isinstance(metrics["before"], dict)):
        raise UserError(f"'{path}': 'before' and 'after' must be tables of metrics")
    numbers = [(k, metrics.get(k)) for k in RUN_NUMBERS]
    numbers += [(f"after.{k}", metrics["after"].get(k)) for k in AFTER_NUMBERS.get(metrics["task"], ())]
    for key, value in numbers:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise UserError(f"'{path}': {key} is {value!r}, not a number: the run's metrics are damaged")
    return metrics
