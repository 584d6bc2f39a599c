"""Time to a verified edit: the default RL edit and NegGrad+ on the same request, side by side.

How to run (repository root; ~30 s per repeat on 2 cores, on an otherwise quiet machine):

    .venv/bin/python benchmarks/time_to_edit.py --repeats 5
    .venv/bin/python benchmarks/time_to_edit.py --repeats 5 --generalist runs/generalist-mask --json

Each repeat runs, as a user would and in turn, fresh processes from the same cached data and
target to an edit verified on held-out test images:
- `rledit train` (the default: MNIST, forget class 7, MaskWorld), its phases read from its
  metrics.json (`phase_seconds`; "startup" is the process's time outside `train`: imports,
  the config, the exit);
- `rledit compare --methods neggrad_plus --seeds 1 --metrics targets` (NegGrad+ on class 7,
  evaluated as `rledit train` verifies an edit: the accuracies, without compare's MIA, probe
  and relearn tests; "algorithm" is the row's own `time_s`, the rest is loading, evaluating
  and writing);
- with `--generalist RUN`: `rledit edit --checkpoint RUN --forget-class 8` (load and serve).
A first pass, not timed, fills the caches a user's first run fills (the target, the pools'
activations). What to expect: one table of median seconds per command and phase, each
command's forget/retain on test, whether it meets the targets (forget <= 1%, retain >= 97%),
and RL / NegGrad+, the median over repeats of the ratio within a repeat (both must meet the
targets, else the ratio is not given). docs/performance.md has the measured numbers.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FORGET_MAX, RETAIN_MIN = 0.01, 0.97


def _timed(argv: list[str]) -> float:
    """Wall seconds of `python -m rledit_ray ARGV` from spawn to exit; its failure is raised."""
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "rledit_ray", *argv], capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode:
        raise SystemExit(f"time_to_edit: `rledit {' '.join(argv)}` failed ({result.returncode}): "
                         f"{(result.stderr or result.stdout).strip().splitlines()[-1:]}")
    return seconds


def run_rl(out: Path) -> dict:
    wall = _timed(["train", "--out", str(out)])
    m = json.loads((out / "metrics.json").read_text())
    phases = {"startup": wall - sum(m["phase_seconds"].values()), **m["phase_seconds"]}
    return {"wall_s": wall, "phases": phases, "forget": m["after"]["forget_acc"], "retain": m["after"]["retain_acc"]}


def run_neggrad(out: Path) -> dict:
    wall = _timed(["compare", "--methods", "neggrad_plus", "--seeds", "1", "--metrics", "targets", "--out", str(out)])
    row = json.loads((out / "rows" / "neggrad_plus-seed0.json").read_text())
    return {"wall_s": wall, "phases": {"algorithm": row["time_s"], "load, evaluate, write": wall - row["time_s"]},
            "forget": row["forget_acc"], "retain": row["retain_acc"]}


def run_serve(checkpoint: str, out: Path) -> dict:
    wall = _timed(["edit", "--checkpoint", checkpoint, "--forget-class", "8", "--out", str(out)])
    m = json.loads((out / "metrics.json").read_text())
    return {"wall_s": wall, "phases": {"load": m["load_seconds"], "edit": m["edit_seconds"]},
            "forget": m["after"]["forget_acc"], "retain": m["after"]["retain_acc"]}


def measure(repeats: int, work: Path, generalist: str | None = None, warmup: bool = True) -> dict:
    commands = {"rl_train": run_rl, "neggrad_plus": run_neggrad}
    if generalist:
        commands["rl_edit_generalist"] = lambda out: run_serve(generalist, out)
    if warmup:
        for name, run in commands.items():
            run(work / f"warmup-{name}")
    load_start = os.getloadavg()[0]
    runs = {name: [] for name in commands}
    for i in range(repeats):  # interleaved: repeat i of each command saw about the same load
        for name, run in commands.items():
            runs[name].append(run(work / f"{name}-{i}"))
    summary = {name: _summary(rows) for name, rows in runs.items()}
    paired = [a["wall_s"] / b["wall_s"] for a, b in zip(runs["rl_train"], runs["neggrad_plus"])]
    met = all(summary[k]["meets_targets"] for k in ("rl_train", "neggrad_plus"))
    return {"repeats": repeats, "load_start": load_start, "load_end": os.getloadavg()[0], "commands": summary,
            "rl_over_neggrad": statistics.median(paired) if met else None, "runs": runs}


def _summary(rows: list[dict]) -> dict:
    med = statistics.median
    return {"wall_s": med(r["wall_s"] for r in rows), "wall_s_all": [r["wall_s"] for r in rows],
            "phases": {k: med(r["phases"][k] for r in rows) for k in rows[0]["phases"]},
            "forget": med(r["forget"] for r in rows), "retain": med(r["retain"] for r in rows),
            "meets_targets": all(r["forget"] <= FORGET_MAX and r["retain"] >= RETAIN_MIN for r in rows)}


def format_table(result: dict) -> str:
    lines = ["| command | median wall s | phases (median s) | forget (test) | retain (test) | meets targets |",
             "|---|---|---|---|---|---|"]
    for name, s in result["commands"].items():
        phases = ", ".join(f"{k} {v:.2f}" for k, v in s["phases"].items())
        lines.append(f"| {name} | {s['wall_s']:.2f} | {phases} | {s['forget']:.2%} | {s['retain']:.2%} | "
                     f"{'yes' if s['meets_targets'] else 'no'} |")
    ratio = result["rl_over_neggrad"]
    lines += ["", f"{result['repeats']} repeats (load {result['load_start']:.2f} at start, {result['load_end']:.2f} "
                  f"at end); RL / NegGrad+, the median of the per-repeat ratio of wall times: "
                  f"{'n/a (a command missed the targets)' if ratio is None else f'{ratio:.2f}'}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="time_to_edit", description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--generalist", help="a generalist run folder: also time `rledit edit` with it")
    p.add_argument("--work", help="folder for the runs (default: a new temporary folder)")
    p.add_argument("--no-warmup", action="store_true", help="skip the untimed first pass")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error("--repeats must be >= 1")
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="time-to-edit-"))
    if work.exists() and any(work.iterdir()):
        p.error(f"--work '{work}' is not empty: name a new folder")
    result = measure(args.repeats, work, args.generalist, warmup=not args.no_warmup)
    print(json.dumps(result) if args.json else format_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
