"""Rerun a measured table of the docs from its commands and rewrite its block in its page.

Every table of measured numbers in README.md and docs/*.md sits between two markers,

    <!-- reproduce: NAME -->
    Measured DATE on MACHINE, load LOAD, commit COMMIT, took DURATION: `python scripts/reproduce.py NAME`
    ... the table ...
    <!-- /reproduce: NAME -->

and TABLES below says, for each NAME, its page, the shell commands that measure it and the
function that turns their outputs (metrics.json of runs, comparison.md of `rledit compare`,
summary.csv of `rledit sweep`, the JSON of `rledit bench --json`, a script's stdout) into
the block. How to run, from the repository root (after `make setup`):

    python scripts/reproduce.py --list                 # names, pages, estimated minutes
    python scripts/reproduce.py results bias           # rerun two tables, rewrite their blocks
    python scripts/reproduce.py --dry-run --all        # print every command, run nothing

Commands run from the repository root with `.venv/bin` first on PATH (`--venv DIR` for
another environment), so `rledit` and `python` are the project's. Each table writes under
runs/reproduce/NAME/ (stdout, stderr and a record of every command under logs/). A rerun
resumes: a command whose record says it finished, or whose output already holds its result
(a run's metrics.json: `rledit train` refuses a finished run directory), is skipped; an
interrupted `rledit train` continues with `--resume`, an interrupted sweep with `--resume`.
The page is rewritten only when every command of the table finished, atomically (a
temporary file, then os.replace). This script needs nothing but the standard library.
"""
from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
RUNS = "runs/reproduce"
OPEN = "<!-- reproduce: {} -->"
CLOSE = "<!-- /reproduce: {} -->"
MARKER = re.compile(r"<!-- (/?)reproduce: ([a-z0-9-]+) -->")
HEADER = ("Measured {date} on {machine}, load {load}, commit {commit}, took {took}: "
          "`python scripts/reproduce.py {name}`")


# ---------------------------------------------------------------------------- the registry
@dataclass(frozen=True)
class Step:
    """One shell command of a table. `done`: a path (from the repository root) whose
    existence means the command already finished; `resume`: (path, extra arguments) to add
    when that path exists but `done` does not (an interrupted run); `run`: the folder the
    command writes its result to; `label`: how the table names its row."""

    command: str
    done: str | None = None
    resume: tuple[str, str] | None = None
    run: str | None = None
    label: str = ""


@dataclass(frozen=True)
class Table:
    page: str
    steps: tuple[Step, ...]
    build: Callable[["Outputs"], str]
    minutes: float  # estimate, from the times the docs quote for the last measurement
    setup: str = ""  # shell prefix of every command (e.g. a variable the commands use)
    files: dict[str, Callable[[], str]] = field(default_factory=dict)  # written under the table's folder first


def out_dir(name: str) -> str:
    return f"{RUNS}/{name}"


def train(out: str, flags: str, label: str = "") -> Step:
    """`rledit train FLAGS --out OUT`: done when OUT holds metrics.json; an interrupted run
    continues from its checkpoint."""
    return Step(f"rledit train {flags} --out {out}".replace("  ", " "), done=f"{out}/metrics.json",
                resume=(f"{out}/checkpoint/rledit_state.json", f"--resume {out}"), run=out, label=label)


def sweep(name: str, spec: str, experiment: str) -> Step:
    out = out_dir(name)
    return Step(f"rledit sweep {spec} --out {out}", done=f"{out}/summary.csv",
                resume=(f"{out}/{experiment}", "--resume"), run=out)


DR = ('DR=$(python -c "import importlib.util as u, pathlib; '
      "print(pathlib.Path(u.find_spec('digit_recognizer').origin).parent)\")")
BYO_MODEL = "--model $DR/model.py:CNN --weights $DR/models/handwriting_model.pth --mean 0.1307 --std 0.3081 --layer fc_layers.2"


def _unlearning_runs() -> tuple[Step, ...]:
    out = out_dir("results")
    return tuple(train(f"{out}/{world}-seed{s}", f"--world {world} --seed {s}", f"{world}-seed{s}")
                 for world in ("mask", "shift") for s in (0, 1, 2))


def _bias_runs() -> tuple[Step, ...]:
    out = out_dir("bias")
    steps = []
    for world in ("mask", "shift"):
        for s in (0, 1, 2):
            flags = "--task bias" + (" --world shift" if world == "shift" else "") + (f" --seed {s}" if s else "")
            steps.append(train(f"{out}/{world}-seed{s}", flags, f"`rledit train {flags}`"))
    return tuple(steps)


PROBES = (  # (flags of scripts/bias_edit_probe.py, how the table names the row after the flags)
    ("--world mask --edit fc2 --objective worst_group --temperature 0.1", "(300)"),
    ("--world mask", "(the defaults: fc2, worst_group, 0.3, 2; 300)"),
    ("--world shift --edit fc2 --objective worst_group --temperature 0.1", "(300)"),
    ("--world shift", "(the defaults; 300)"),
    ("--world mask --edit fc1 --rank 4 --objective bias_score --temperature 0.05 --steps 200", ""),
    ("--world shift --edit fc1 --rank 4 --objective bias_score --temperature 0.05 --utility-coef 1 --steps 200", ""),
    ("--world shift --edit fc1 --rank 4 --objective worst_group --temperature 0.05 --utility-coef 4 --steps 200", ""),
    ("--world mask --edit fc1,fc2", "(both layers, rank 1; 300)"),
    ("--world mask --edit fc1,fc2 --rank 4 --objective bias_score --temperature 0.05", "(300)"),
    ("--world mask --edit fc1 --rank 16 --objective bias_score --temperature 0.05 --utility-coef 1", "(300)"),
)

GEN = out_dir("generalist-training")  # the serving tables edit with these runs' checkpoints


def _generalist_runs() -> tuple[Step, ...]:
    return (train(f"{GEN}/gen-mask", "--config configs/generalist_mask.yaml", "`configs/generalist_mask.yaml`"),
            train(f"{GEN}/gen-shift", "--config configs/generalist_shift.yaml", "`configs/generalist_shift.yaml`"),
            train(f"{GEN}/gen-mask-seed1", "--config configs/generalist_mask.yaml --seed 1",
                  "`configs/generalist_mask.yaml --seed 1`"),
            train(f"{GEN}/gen-shift-seed1", "--config configs/generalist_shift.yaml --seed 1",
                  "`configs/generalist_shift.yaml --seed 1`"))


def _with_agent(config: str, agent: str) -> Callable[[], str]:
    """A shipped config plus an `agent:` section (the shipped generalist configs have none)."""
    return lambda: (ROOT / config).read_text().rstrip("\n") + f"\nagent: {agent}\n"


def _serve_timing() -> tuple[Step, ...]:
    out = out_dir("generalist-serve-timing")
    steps = []
    for world in ("mask", "shift"):
        for k in (7, 8, 9):
            steps.append(Step(f"rledit edit --checkpoint {GEN}/gen-{world} --forget-class {k} --repeat 5 "
                              f"--out {out}/{world}-{k}", done=f"{out}/{world}-{k}/metrics.json",
                              run=f"{out}/{world}-{k}", label=f"{world}|{k}"))
    return _generalist_runs()[:2] + tuple(steps)


def _tables() -> dict[str, Table]:
    byo, hf = out_dir("byo"), out_dir("byo-transformers")
    mask_settings = out_dir("byo-mask-settings")
    ppo = out_dir("generalist-ppo-steps")
    serving = out_dir("generalist-serving")
    return {
        "results": Table("docs/results.md", _unlearning_runs(), lambda o: unlearning_runs_table(o), 12),
        "baselines-unlearning": Table("docs/baselines.md", (Step(
            f"rledit compare --task unlearning --dataset mnist --forget-class 7 --seeds 3 --rl-iterations 25 "
            f"--out {out_dir('baselines-unlearning')}", run=out_dir("baselines-unlearning")),),
            lambda o: comparison_md(o), 30),
        "baselines-bias": Table("docs/baselines.md", (Step(
            f"rledit compare --task bias --seeds 3 --out {out_dir('baselines-bias')}", run=out_dir("baselines-bias")),),
            lambda o: comparison_md(o), 70),
        "bias": Table("docs/bias.md", _bias_runs(), lambda o: bias_runs_table(o), 55),
        "bias-fc1": Table("docs/bias.md", (train(f"{out_dir('bias-fc1')}/mask-fc1-seed0", "--task bias --layer fc1",
                                                 "`rledit train --task bias --layer fc1`"),),
                          lambda o: bias_delta_table(o), 14),
        "bias-probe": Table("docs/bias.md", tuple(
            Step(f"python scripts/bias_edit_probe.py {flags}", label=f"`{flags}`" + (f" {note}" if note else ""))
            for flags, note in PROBES), lambda o: probe_table(o), 10),
        "bias-offset-bound": Table("docs/bias.md", (Step("python scripts/bias_offset_bound.py"),),
                                   lambda o: offset_bound_table(o), 2),
        "generalist-training": Table("docs/generalist.md", _generalist_runs(), lambda o: generalist_table(o), 20),
        "generalist-ppo-steps": Table("docs/generalist.md", (
            train(f"{ppo}/shift-lr", f"--config {ppo}/shift-lr.yaml", "`agent.lr: 0.0003`"),
            train(f"{ppo}/shift-epochs", f"--config {ppo}/shift-epochs.yaml", "`agent.num_epochs: 3`")),
            lambda o: generalist_table(o), 12,
            files={"shift-lr.yaml": _with_agent("configs/generalist_shift.yaml", "{lr: 0.0003}"),
                   "shift-epochs.yaml": _with_agent("configs/generalist_shift.yaml", "{num_epochs: 3}")}),
        "generalist-earlystop": Table("docs/generalist.md", (train(
            f"{out_dir('generalist-earlystop')}/gen-shift-earlystop", "--config configs/generalist_shift_earlystop.yaml",
            "`configs/generalist_shift_earlystop.yaml`"),), lambda o: generalist_table(o), 4),
        "generalist-serving": Table("docs/generalist.md", _generalist_runs()[:2] + (
            Step(f"rledit compare-requests --checkpoint {GEN}/gen-mask --out {serving}", run=serving),
            Step(f"rledit compare-requests --checkpoint {GEN}/gen-shift --baselines --out {serving}", run=serving)),
            lambda o: requests_table(o), 15),
        "generalist-serve-timing": Table("docs/generalist.md", _serve_timing(), lambda o: serve_timing_table(o), 3),
        "sweep-reward-coefs": Table("docs/sweeps.md", (sweep(
            "sweep-reward-coefs", "tune_configs/unlearning_reward_coefs.yaml", "unlearning-reward-coefs"),),
            lambda o: sweep_table(o, ["reward.utility_coef"], UNLEARNING_SWEEP), 8),
        "sweep-episode-length": Table("docs/sweeps.md", (sweep(
            "sweep-episode-length", "tune_configs/unlearning_episode_length.yaml", "unlearning-episode-length"),),
            lambda o: sweep_table(o, ["episode_length"], UNLEARNING_SWEEP), 8),
        "sweep-sample-count": Table("docs/sweeps.md", (sweep(
            "sweep-sample-count", "tune_configs/unlearning_sample_count.yaml", "unlearning-sample-count"),),
            lambda o: sweep_table(o, ["samples.per_set"], UNLEARNING_SWEEP), 8),
        "sweep-world-rank": Table("docs/sweeps.md", (sweep(
            "sweep-world-rank", "tune_configs/unlearning_world_rank.yaml", "unlearning-world-rank"),),
            lambda o: sweep_table(o, ["world", "rank", "seed"], UNLEARNING_SWEEP), 8),
        "sweep-bias-reward-coefs": Table("docs/sweeps.md", (sweep(
            "sweep-bias-reward-coefs", "tune_configs/bias_reward_coefs.yaml", "bias-reward-coefs"),),
            lambda o: sweep_table(o, ["reward.utility_coef"], BIAS_SWEEP), 11),
        "performance": Table("docs/performance.md", (Step("rledit bench --repeats 5 --seconds 0.5 --json"),),
                             lambda o: bench_table(o), 6),
        "performance-world-cpu": Table("docs/performance.md", (
            Step("rledit bench --world-only --device cpu --repeats 5 --seconds 0.4 --json"),
            *[Step("rledit bench --world-only --device cpu --configs heavy --repeats 5 --seconds 0.4 --json",
                   label=f"heavy alone, run {i}") for i in range(1, 5)]),
            lambda o: world_only_table(o), 6),
        "performance-gpu": Table("docs/performance.md", (
            Step("rledit bench --world-only --device cuda --repeats 5 --seconds 0.4 --json"),
            Step("python -m pytest -q tests/test_gpu.py", label="tests/test_gpu.py")),
            lambda o: world_only_table(o), 3),
        "test-suite": Table("docs/performance.md", (
            Step(f"rm -rf {out_dir('test-suite')}/clone && git clone -q . {out_dir('test-suite')}/clone"),
            Step(f"make -C {out_dir('test-suite')}/clone test")), lambda o: test_suite_table(o), 16),
        "byo": Table("docs/byo.md", tuple(
            train(f"{byo}/{name}", f"{BYO_MODEL} --mask-bounds=-1,1.5 --mask-update additive {flags}", label)
            for name, flags, label in (("seed0", "--seed 0", "0"), ("seed1", "--seed 1", "1"), ("seed2", "--seed 2", "2"),
                                       ("seed0-runners2", "--seed 0 --env-runners 2", "0, `--env-runners 2`"))),
            lambda o: byo_table(o), 6, setup=DR),
        "byo-mask-settings": Table("docs/byo.md", (
            train(f"{mask_settings}/default-seed0", f"{BYO_MODEL} --seed 0", "[0, 1.5] (the default)|multiplicative|0"),
            *[train(f"{mask_settings}/bounds-seed{s}", f"{BYO_MODEL} --mask-bounds=-1,1.5 --seed {s}",
                    f"[-1, 1.5]|multiplicative|{s}") for s in (0, 1, 2)]),
            lambda o: mask_settings_table(o), 25, setup=DR),
        "byo-bench": Table("docs/byo.md", (Step(
            "rledit bench --configs default,third_party --runners 0 --envs 1,4 --samples 256 --repeats 5 "
            "--seconds 0.5 --json"),), lambda o: byo_bench_table(o), 4),
        "byo-transformers": Table("docs/byo.md", (
            Step(f"python scripts/make_text_classifier.py --out {hf}/minilm-redditbias",
                 done=f"{hf}/minilm-redditbias/config.json", label="make"),
            Step(f"python scripts/hf_target_steps.py --hf-model {hf}/minilm-redditbias", label="steps"),
            train(f"{hf}/train", f"--task bias --hf-model {hf}/minilm-redditbias --layer classifier --iterations 3",
                  "train")),
            lambda o: transformers_table(o), 10),
    }


# ---------------------------------------------------------------------------- outputs
class Outputs:
    """What a table's commands left: files under the repository, each step's stdout and
    record (command, seconds, exit status)."""

    def __init__(self, name: str, table: Table, root: Path | None = None):
        self.name, self.table, self.root = name, table, root or ROOT
        self.logs = self.root / out_dir(name) / "logs"

    def path(self, rel: str) -> Path:
        return self.root / rel

    def json(self, rel: str) -> dict:
        return json.loads(self.path(rel).read_text())

    def stdout(self, i: int) -> str:
        p = self.logs / f"step{i:02d}.out"
        return p.read_text() if p.is_file() else ""

    def record(self, i: int) -> dict | None:
        p = self.logs / f"step{i:02d}.json"
        return json.loads(p.read_text()) if p.is_file() else None

    def seconds(self, i: int) -> float | None:
        r = self.record(i)
        return r["seconds"] if r and r.get("rc") == 0 else None

    def metrics(self, step: Step) -> dict:
        return self.json(f"{step.run}/metrics.json")

    def last_json(self, i: int) -> dict:
        """The last stdout line of step i that is a JSON object (`--json` output, a probe's result)."""
        for line in reversed(self.stdout(i).splitlines()):
            if line.startswith("{"):
                return json.loads(line)
        raise ValueError(f"{self.name}: step {i} printed no JSON line ({self.logs})")


# ---------------------------------------------------------------------------- formatting
def pct(x) -> str:
    return "n/a" if x is None or x != x else f"{100 * x:.2f}%"


def pts(x) -> str:
    return "n/a" if x is None or x != x else f"{100 * x:.2f}"


def signed(x) -> str:
    return "n/a" if x is None or x != x else f"{100 * x:+.2f}"


def thousands(x: float) -> str:
    return f"{x:,.0f}"


def pct_range(values: list[float]) -> str:
    return f"{100 * min(values):.2f}-{100 * max(values):.2f}%"


def duration(seconds: float) -> str:
    seconds = round(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h} h {m} min" if h else f"{m} min {s} s" if m else f"{s} s"


def md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join([*lines, *("| " + " | ".join(r) + " |" for r in rows)])


# ---------------------------------------------------------------------------- table builders
# Keys read here: rledit_ray/training.py (metrics.json), report.py (summary_table's columns),
# compare.py / compare_requests.py (comparison.md), sweep.py (summary.csv), bench.py (--json),
# tasks/unlearning.py and tasks/bias.py (metric names), scripts/*.py (their printed lines).
def unlearning_runs_table(o: Outputs) -> str:
    """docs/results.md: one row per run, as `rledit summarize` prints it; then what the first
    run (the `make demo` run) printed."""
    rows = []
    for step in o.table.steps:
        m = o.metrics(step)
        a, r = m["after"], m.get("random_policy", {})
        rows.append([step.label or Path(step.run).name, m["world"], str(m["seed"]), pct(a["forget_acc"]),
                     pct(a["retain_acc"]), pct(a.get("forget_train_acc")), pct(a.get("retain_train_acc")),
                     f"{pct(r.get('forget_acc'))} / {pct(r.get('retain_acc'))}", str(m["env_steps"]),
                     f"{m['wall_time_s']:.0f}"])
    text = md_table(["run", "world", "seed", "forget (test)", "retain (test)", "forget (train)", "retain (train)",
                     "random policy forget / retain", "env steps", "wall s"], rows)
    lines = [line.replace(str(o.root) + "/", "") for line in o.stdout(0).splitlines()
             if line.startswith(("before:", "iter ", "validation target", "after:"))]
    if lines:
        first = o.table.steps[0].command.split(" --out ")[0]
        text += f"\n\nWhat `{first}` printed (`make demo` trains the same edit):\n\n```\n" + "\n".join(lines) + "\n```"
    return text


def comparison_md(o: Outputs) -> str:
    """The comparison.md that `rledit compare` writes: the table of means and its note."""
    return o.path(f"{o.table.steps[-1].run}/comparison.md").read_text().strip()


BIAS_KEYS = ("overall_auc", "bias_score", "worst_group_bias_auc", "counterfactual_gap")


def bias_runs_table(o: Outputs) -> str:
    """docs/bias.md: before -> after on test per run; means of the changes per world; the
    paired 95% bootstrap intervals each run's metrics.json holds."""
    rows, by_world, intervals = [], {}, []
    for step in o.table.steps:
        m = o.metrics(step)
        b, a = m["before"], m["after"]
        d = {k: a[k] - b[k] for k in BIAS_KEYS}
        rows.append([step.label, f"{pts(b['overall_auc'])} -> {pts(a['overall_auc'])}",
                     f"{pts(b['bias_score'])} -> {pts(a['bias_score'])} ({signed(d['bias_score'])})",
                     f"{pts(b['worst_group_bias_auc'])} -> {pts(a['worst_group_bias_auc'])} "
                     f"({signed(d['worst_group_bias_auc'])})",
                     f"{pts(b['counterfactual_gap'])} -> {pts(a['counterfactual_gap'])}",
                     f"{m['wall_time_s'] / 60:.1f} min"])
        by_world.setdefault(m["world"], []).append((m["seed"], d))
        iv = m.get("intervals") or {}
        if iv:
            intervals.append([step.label] + [f"{signed(d[k])} [{signed(iv[k][0])}, {signed(iv[k][1])}]"
                                             for k in ("bias_score", "worst_group_bias_auc", "overall_auc")])
    text = md_table(["command", "overall AUC", "bias score", "worst-group BPSN/BNSP AUC", "counterfactual gap",
                     "train time"], rows)
    means = []
    for world, runs in by_world.items():
        seeds = sorted(s for s, _ in runs)
        means.append([f"{world.capitalize()}World", "seeds " + ", ".join(map(str, seeds))]
                     + [signed(sum(d[k] for _, d in runs) / len(runs))
                        for k in ("overall_auc", "bias_score", "worst_group_bias_auc")])
    text += "\n\nMean change over seeds, in points:\n\n" + md_table(
        ["world", "runs", "overall AUC", "bias score", "worst-group BPSN/BNSP AUC"], means)
    if intervals:
        text += ("\n\nPaired 95% bootstrap intervals of the change on test (report.md of each run):\n\n"
                 + md_table(["command", "bias score", "worst-group BPSN/BNSP AUC", "overall AUC"], intervals))
    return text


def bias_delta_table(o: Outputs) -> str:
    rows = []
    for step in o.table.steps:
        m = o.metrics(step)
        rows.append([step.label] + [signed(m["after"][k] - m["before"][k])
                                    for k in ("overall_auc", "bias_score", "worst_group_bias_auc")]
                    + [f"{m['wall_time_s'] / 60:.1f} min"])
    return md_table(["command", "overall AUC", "bias score", "worst-group BPSN/BNSP AUC", "train time"], rows)


PROBE_ORACLE = "best_bias_score_on_test (oracle, not a result)"  # scripts/bias_edit_probe.py's key


def probe_table(o: Outputs) -> str:
    rows = []
    for i, step in enumerate(o.table.steps):
        r = o.last_json(i)
        before, chosen = r["before"], r["chosen_on_validation"]
        rows.append([step.label] + [signed(chosen[k] - before[k])
                                    for k in ("overall_auc", "bias_score", "worst_group_bias_auc")]
                    + [signed(r[PROBE_ORACLE]["bias_score"] - before["bias_score"])])
    return md_table(["probe (edit, objective, temperature, utility_coef; steps)", "overall AUC", "bias score",
                     "worst-group", "best on test"], rows)


OFFSET_LINE = re.compile(r"per-group (\S+)\s+fitted on (.+?)\s+utility_coef (\S+): (.*)")


def offset_bound_table(o: Outputs) -> str:
    rows = []
    for line in o.stdout(0).splitlines():
        match = OFFSET_LINE.match(line)
        if match:
            kind, source, coef, rest = match.groups()
            d = dict(re.findall(r"d(\w+) (\S+)", rest))
            rows.append([kind.replace("+", " and "), source, coef, d.get("overall_auc", "n/a"),
                         d.get("bias_score", "n/a"), d.get("worst_group_bias_auc", "n/a")])
    return md_table(["per-group transform", "fitted on", "utility_coef", "overall AUC", "bias score",
                     "worst-group BPSN/BNSP AUC"], rows)


def generalist_table(o: Outputs) -> str:
    """docs/generalist.md: one row per generalist run (metrics.json: history, per_request,
    heldout_classes); early stop read from the run's printed lines."""
    rows, classes = [], [7, 8, 9]
    for i, step in enumerate(o.table.steps):
        if not step.command.startswith("rledit train"):
            continue
        m = o.metrics(step)
        classes = m["heldout_classes"]
        best = next(h for h in m["history"] if h["iteration"] == m["best_iteration"])
        early = ", early stop" if "stopping early" in o.stdout(i) else ""
        held = [m["per_request"][str(k)] for k in m["heldout_classes"]]
        rows.append([step.label, f"{m['iterations']} ({m['best_iteration']}{early})", str(m["env_steps"]),
                     f"{m['wall_time_s']:.0f} s", f"{pct(best['forget_val_acc'])} / {pct(best['forget_val_acc_max'])}",
                     " / ".join(pct(r["forget_acc"]) for r in held), pct_range([r["retain_acc"] for r in held])])
    return md_table(["run", "iterations (best)", "env steps", "wall",
                     "training requests at the best iteration: val forget mean / max",
                     "held-out test forget " + " / ".join(map(str, classes)), "held-out test retain"], rows)


def requests_table(o: Outputs) -> str:
    """docs/generalist.md: `rledit compare-requests`'s comparison.md, then the unedited network
    and a random policy on the same held-out requests (the runs' metrics.json)."""
    text = o.path(f"{o.table.steps[-1].run}/comparison.md").read_text().strip()
    rows = []
    for step in o.table.steps:
        if step.command.startswith("rledit train"):
            m = o.metrics(step)
            b, r = m["before"], m["random_policy"]
            rows.append([m["world"], f"{pct(b['forget_acc'])} / {pct(b['retain_acc'])}",
                         f"{pct(r['forget_acc'])} / {pct(r['retain_acc'])}"])
    return text + "\n\nHeld-out means (`metrics.json` `before`, `random_policy`):\n\n" + md_table(
        ["world", "unedited: forget / retain (test)", "random policy: forget / retain (test)"], rows)


def serve_timing_table(o: Outputs) -> str:
    rows, every = [], []
    for step in o.table.steps:
        if not step.command.startswith("rledit edit"):
            continue
        m = o.metrics(step)
        world, k = step.label.split("|")
        every += m["edit_seconds_all"]
        rows.append([world, k, f"{m['edit_seconds_median']:.2f}", f"{m['edit_seconds_max']:.2f}",
                     f"{m['load_seconds']:.1f}"])
    text = md_table(["world", "forget class", f"median s (of {len(every) // max(len(rows), 1)} serves)", "max s",
                     "load s (checkpoint, target, data)"], rows)
    return text + f"\n\n{sum(s < 1 for s in every)} of {len(every)} serves finished under 1 s."


UNLEARNING_SWEEP = (("forget_acc", "forget (test)", pct), ("retain_acc", "retain (test)", pct),
                    ("score_val", "validation score", lambda v: f"{v:.4f}"), ("env_steps", "env steps", lambda v: f"{v:.0f}"))
BIAS_SWEEP = (("worst_group_bias_auc", "worst-group BPSN/BNSP AUC", pts), ("bias_score", "bias score", pts),
              ("overall_auc", "overall AUC", pts), ("counterfactual_gap", "counterfactual gap", pts))


def _number(text: str):
    try:
        return float(text)
    except ValueError:
        return text


def sweep_table(o: Outputs, swept: list[str], columns) -> str:
    """docs/sweeps.md: one row per trial of summary.csv (rledit_ray/sweep.py), sorted by the
    swept values; a trial that did not finish shows its status."""
    with open(o.path(f"{o.table.steps[0].run}/summary.csv"), newline="") as f:
        trials = list(csv.DictReader(f))
    trials.sort(key=lambda t: [(isinstance(_number(t[k]), str), _number(t[k])) for k in swept])
    rows = []
    for t in trials:
        if t["status"] != "finished":
            rows.append([t[k] for k in swept] + [t["status"]] * len(columns))
            continue
        rows.append([t[k] for k in swept] + [fmt(float(t[key])) if t.get(key) else "n/a" for key, _, fmt in columns])
    return md_table([*swept, *(label for _, label, _ in columns)], rows)


def _edited(settings: dict) -> str:
    modules = dict.fromkeys(e.rsplit(".", 1)[0] if e.endswith((".weight", ".bias")) else e for e in settings["edit"])
    return ",".join(modules)


def _order(configs: list[dict]) -> list[dict]:
    rank = {"heavy": 0, "default": 1}
    return sorted(configs, key=lambda c: rank.get(c["name"], 2))


def _forward_ms(steps_per_s: float) -> str:
    ms = 1e3 / steps_per_s
    return f"{ms:.1f}" if ms >= 1 else f"{ms:.2f}"


def bench_table(o: Outputs) -> str:
    """docs/performance.md, from `rledit bench --json` (rledit_ray/bench.py's result)."""
    result = o.last_json(0)
    rows, scaling, driver, ppo = [], [], [], []
    for c in _order(result["configs"]):
        cpu = c["cpu_clock"]
        label = f"{c['name']} ({_edited(c['settings'])}, {c['settings']['samples_per_set']} per set)"
        batch4 = next((b for b in c["batches"] if b["envs"] == 4), None)
        best = c["best_rllib"]
        ratios = [r["rllib_over_world"] for r in c["rllib"]]
        rows.append([label, thousands(c["limit_steps_per_s"]), thousands(c["world_steps_per_s"]),
                     f"{c['world_over_limit']:.2f}, {cpu['world_over_limit']:.2f}",
                     f"{batch4['over_limit']:.2f}" if batch4 else "n/a",
                     f"{cpu['overhead_us_per_step'] / 1e3:.2f} ms beside a "
                     f"{_forward_ms(cpu['limit_steps_per_s'])} ms forward pass",
                     f"{thousands(best['rllib_steps_per_s'])} ({best['runners']} runners x {best['envs_per_runner']} "
                     f"{best['vectorize']})" if best else "n/a",
                     f"{min(ratios):.2f}-{max(ratios):.2f}" if ratios else "n/a"])
        scaling += [[c["name"], str(r["samples_per_set"]), f"{r['world_over_limit']:.2f}"] for r in c["samples_scaling"]]
        driver += [[c["name"], str(r["envs_per_runner"]), thousands(r["rllib_steps_per_s"]), f"{r['rllib_over_world']:.2f}"]
                   for r in c["rllib"] if r["runners"] == 0 and r["vectorize"] == "batched"]
        p = c["ppo_iteration"]
        if p:
            ppo.append([c["name"], str(p["env_steps"])] + [f"{p[k]:.1f} s" if p[k] is not None else "n/a"
                                                           for k in ("total_s", "sampling_s", "learning_s")])
    n = max((len(c["rllib"]) for c in result["configs"]), default=0)
    text = md_table(["config", "limit steps/s", "world steps/s", "world / limit (wall, CPU clock)",
                     "WorldBatch of 4 / limit", "overhead per step (CPU)", "best RLlib steps/s",
                     f"RLlib / world, all {n} settings"], rows)
    text += "\n\nReward samples (world / limit, wall clock):\n\n" + md_table(
        ["config", "reward samples per set", "world / limit"], scaling)
    if driver:
        text += "\n\nRLlib sampling on the driver's own runner (0 remote runners, batched sub-envs):\n\n" + md_table(
            ["config", "sub-envs", "RLlib steps/s", "RLlib / world"], driver)
    if ppo:
        text += "\n\nOne PPO iteration (median):\n\n" + md_table(
            ["config", "env steps", "total", "sampling", "learning"], ppo)
    return text


def world_only_table(o: Outputs) -> str:
    """docs/performance.md, from `rledit bench --world-only --json` (first step); further
    bench steps of one config are repeats of it; a pytest step adds its summary line."""
    result = o.last_json(0)
    rows, scaling = [], []
    for c in _order(result["configs"]):
        cpu = c["cpu_clock"]
        rows.append([f"{c['name']} ({_edited(c['settings'])}, {c['settings']['samples_per_set']} per set, "
                     f"{c['settings']['device']})", thousands(c["limit_steps_per_s"]), thousands(c["world_steps_per_s"]),
                     f"{c['world_over_limit']:.2f}", ", ".join(f"{b['envs']}: {thousands(b['steps_per_s'])} steps/s, "
                                                              f"{b['over_limit']:.2f}" for b in c["batches"]) or "n/a",
                     f"{cpu['overhead_us_per_step'] / 1e3:.2f} ms beside a {_forward_ms(cpu['limit_steps_per_s'])} ms "
                     "forward pass"])
        scaling += [[c["name"], str(r["samples_per_set"]), thousands(r["limit_steps_per_s"]),
                     thousands(r["world_steps_per_s"]), f"{r['world_over_limit']:.2f}"] for r in c["samples_scaling"]]
    text = md_table(["config", "limit steps/s", "world steps/s", "world / limit", "WorldBatch of M: steps/s, / limit",
                     "overhead per step (CPU)"], rows)
    text += "\n\n" + md_table(["config", "reward samples per set", "limit steps/s", "world steps/s", "world / limit"],
                              scaling)
    repeats = []
    for i, step in enumerate(o.table.steps[1:], start=1):
        if step.command.startswith("rledit bench"):
            c = o.last_json(i)["configs"][0]
            last = c["samples_scaling"][-1] if c["samples_scaling"] else None
            repeats.append([step.label, f"{c['world_over_limit']:.2f}",
                            f"{last['world_over_limit']:.2f} ({last['samples_per_set']} per set)" if last else "n/a"])
        else:
            summary = next((line for line in reversed(o.stdout(i).splitlines()) if re.search(r"\d+ (passed|failed)", line)),
                           "no summary line")
            text += f"\n\n`{step.command}`: {summary.strip('= ')}"
    if repeats:
        text = text + "\n\n" + md_table(["run", "world / limit", "its scaling row, world / limit"], repeats)
    return text


PYTEST_COUNTS = re.compile(r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed)")


def test_suite_table(o: Outputs) -> str:
    """docs/performance.md: `make test` in a fresh clone; pytest's summary line."""
    out = o.stdout(len(o.table.steps) - 1)
    line = next((text for text in reversed(out.splitlines()) if PYTEST_COUNTS.search(text)), "")
    counts = {kind.rstrip("s") if kind.startswith("error") else kind: n for n, kind in PYTEST_COUNTS.findall(line)}
    tests = re.search(r"in ([\d.]+)s", line)
    total = sum(o.seconds(i) or 0 for i in range(len(o.table.steps)))
    return md_table(["from a fresh clone", "`make test`, install included", "the tests", "passed", "skipped", "failed"],
                    [[f"{os.cpu_count()} CPU cores", duration(total), duration(float(tests.group(1))) if tests else "n/a",
                      counts.get("passed", "0"), counts.get("skipped", "0"), counts.get("failed", "0")]])


def byo_table(o: Outputs) -> str:
    first = o.metrics(o.table.steps[0])
    rows = [["before the edit", pct(first["before"]["forget_acc"]), pct(first["before"]["retain_acc"]), "", ""]]
    for i, step in enumerate(o.table.steps):
        m, seconds = o.metrics(step), o.seconds(i)
        rows.append([step.label, pct(m["after"]["forget_acc"]), pct(m["after"]["retain_acc"]),
                     thousands(m["env_steps"]), f"{seconds:.0f} s" if seconds is not None else "n/a"])
    return md_table(["seed", "forget (test)", "retain (test)", "env steps", "wall, command to verified edit"], rows)


def mask_settings_table(o: Outputs) -> str:
    rows = []
    for step in o.table.steps:
        m = o.metrics(step)
        rows.append([*step.label.split("|"), pct(m["after"]["forget_acc"]), pct(m["after"]["retain_acc"]),
                     thousands(m["env_steps"])])
    return md_table(["mask bounds", "mask update", "seed", "forget (test)", "retain (test)", "env steps"], rows)


def byo_bench_table(o: Outputs) -> str:
    rows = []
    for c in sorted(o.last_json(0)["configs"], key=lambda c: c["name"] != "third_party"):
        one = next((r for r in c["rllib"] if r["envs_per_runner"] == 1 and r["runners"] == 0), None)
        label = {"third_party": "digit-recognizer-py's CNN", "default": "the project's CNN"}.get(c["name"], c["name"])
        rows.append([f"{c['name']} ({label}, {_edited(c['settings'])})", thousands(c["world_steps_per_s"]),
                     thousands(one["rllib_steps_per_s"]) if one else "n/a"])
    return md_table(["config", "world steps/s", "RLlib sampling steps/s (1 sub-env)"], rows)


HF_NOTES = {"last-layer FFN output": " (samples 64/set, 64 pairs)"}  # scripts/hf_target_steps.py's EDITS
HF_LINE = re.compile(r"(.+?): edit (\S+), (\d+) action dims, (\d+) reward rows x (\d+) tokens, split '(\w+)': "
                     r"world ([\d.]+) steps/s, full forward ([\d.]+)/s")


def transformers_table(o: Outputs) -> str:
    rows = []
    for line in o.stdout(1).splitlines():
        match = HF_LINE.match(line)
        if match:
            name, edit, dims, rows_n, tokens, split, world, full = match.groups()
            rows.append([f"`{edit}`{HF_NOTES.get(name, '')}", thousands(float(dims)),
                         f"{thousands(float(rows_n))} x {tokens}", split, world, f"{full}/s"])
    made = next((text for text in o.stdout(0).splitlines() if text.startswith("wrote ")), "")
    acc = re.search(r"fit ([\d.]+), validation ([\d.]+) \((\d+) s\)", made)
    train_s = o.seconds(2)
    text = md_table(["edit", "action dims", "reward rows x tokens", "split", "world steps/s",
                     "full forward of the same rows"], rows)
    return text + "\n\n" + md_table(["step", "result", "wall"], [
        ["`scripts/make_text_classifier.py`", f"head accuracy {acc.group(1)} fit / {acc.group(2)} validation" if acc
         else "n/a", f"{acc.group(3)} s" if acc else "n/a"],
        [f"`{o.table.steps[2].command.split(' --out ')[0]}`", "ran end to end",
         f"{train_s:.0f} s" if train_s is not None else "n/a"]])


# ---------------------------------------------------------------------------- pages
def find_blocks(text: str) -> dict[str, tuple[int, int]]:
    """{name: (end of the open marker, start of the close marker)}; raises on a block that
    is not one open marker followed by its close marker (no nesting, no repeats)."""
    blocks, open_name, open_end = {}, None, 0
    for m in MARKER.finditer(text):
        closing, name = m.group(1) == "/", m.group(2)
        if not closing:
            if open_name is not None:
                raise ValueError(f"reproduce block '{open_name}' is not closed before '{name}' opens")
            if name in blocks:
                raise ValueError(f"reproduce block '{name}' appears twice")
            open_name, open_end = name, m.end()
        else:
            if open_name != name:
                raise ValueError(f"'/reproduce: {name}' closes no open block")
            blocks[name] = (open_end, m.start())
            open_name = None
    if open_name is not None:
        raise ValueError(f"reproduce block '{open_name}' is never closed")
    return blocks


def rewrite_block(text: str, name: str, body: str) -> str:
    """`text` with block `name`'s content replaced by `body`; everything else unchanged."""
    blocks = find_blocks(text)
    if name not in blocks:
        raise ValueError(f"no reproduce block '{name}'")
    start, end = blocks[name]
    return text[:start] + "\n" + body.strip("\n") + "\n" + text[end:]


def write_atomically(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def rewrite_page(path: Path, name: str, body: str) -> None:
    write_atomically(path, rewrite_block(path.read_text(), name, body))


def machine() -> str:
    """uname, the CPU count and model, and the GPUs nvidia-smi names (if any)."""
    u = platform.uname()
    text = f"{u.system} {u.machine} ({os.cpu_count()} CPUs"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
        text += f" {cpu}"
    except (OSError, StopIteration):
        pass
    try:
        gpus = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                              text=True, timeout=20).stdout.split("\n")
        gpus = [g.strip() for g in gpus if g.strip()]
        text += f"; GPU {' + '.join(gpus)}" if gpus else ""
    except (OSError, subprocess.SubprocessError):
        pass
    return text.replace(",", "") + ")"


def header(name: str, started: float, load0: float, load1: float, commit: str, skipped: int, total: int) -> str:
    took = duration(time.time() - started) + (f" ({skipped} of {total} commands already done)" if skipped else "")
    return HEADER.format(date=datetime.date.today().isoformat(), machine=machine(),
                         load=f"{load0:.2f} at start and {load1:.2f} at end", commit=commit, took=took, name=name)


def git_commit() -> str:
    sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                           text=True).stdout.strip()
    return (sha or "unknown") + (" with uncommitted changes" if dirty else "")


# ---------------------------------------------------------------------------- running
def command_line(table: Table, step: Step, root: Path | None = None) -> tuple[str, str]:
    """(the command as run, why it is skipped or ''), from the step's files."""
    root, command = root or ROOT, step.command
    if step.done and (root / step.done).exists():
        return command, "done"
    if step.resume and (root / step.resume[0]).exists():
        command = f"{command} {step.resume[1]}"
    return command, ""


def _copy(stream, sinks):
    for line in iter(stream.readline, ""):
        for sink in sinks:
            sink.write(line)
            sink.flush()
    stream.close()


def run_step(command: str, setup: str, env: dict, log: Path) -> int:
    """Run one command in bash from the repository root; stdout and stderr go to the
    terminal and to log.out / log.err (renamed into place when the command ends)."""
    shell = f"{setup}; {command}" if setup else command
    proc = subprocess.Popen(["bash", "-c", shell], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    with open(f"{log}.out.tmp", "w") as out, open(f"{log}.err.tmp", "w") as err:
        threads = [threading.Thread(target=_copy, args=(proc.stdout, [out, sys.stdout])),
                   threading.Thread(target=_copy, args=(proc.stderr, [err, sys.stderr]))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        rc = proc.wait()
    os.replace(f"{log}.out.tmp", f"{log}.out")
    os.replace(f"{log}.err.tmp", f"{log}.err")
    return rc


def reproduce(name: str, table: Table, env: dict, dry_run: bool = False) -> None:
    out = ROOT / out_dir(name)
    logs = out / "logs"
    print(f"== {name} -> {table.page} (~{table.minutes:g} min)", flush=True)
    if table.setup:
        print(f"   before each command: {table.setup}")
    for file in table.files:
        print(f"   write {out_dir(name)}/{file}")
    if not dry_run:
        logs.mkdir(parents=True, exist_ok=True)
        for file, text in table.files.items():
            write_atomically(out / file, text())
    started, load0, skipped = time.time(), os.getloadavg()[0], 0
    for i, step in enumerate(table.steps):
        command, skip = command_line(table, step)
        record_path = logs / f"step{i:02d}.json"
        record = json.loads(record_path.read_text()) if record_path.is_file() else None
        if not skip and record and record.get("rc") == 0 and record.get("command") == step.command:
            skip = "finished before"
        print(f"   {'[' + skip + '] ' if skip else ''}{command}", flush=True)
        if skip:
            skipped += 1
            continue
        if dry_run:
            continue
        t0 = time.time()
        rc = run_step(command, table.setup, env, logs / f"step{i:02d}")
        write_atomically(record_path, json.dumps({"command": step.command, "ran": command, "rc": rc,
                                                  "seconds": time.time() - t0,
                                                  "finished": datetime.datetime.now().isoformat(timespec="seconds")}) + "\n")
        if rc != 0:
            raise SystemExit(f"{name}: command failed with exit status {rc}: {command} (logs: {logs})")
    if dry_run:
        return
    body = table.build(Outputs(name, table))
    head = header(name, started, load0, os.getloadavg()[0], git_commit(), skipped, len(table.steps))
    rewrite_page(ROOT / table.page, name, f"{head}\n\n{body}")
    print(f"   rewrote the '{name}' block of {table.page}", flush=True)


def environment(venv: Path) -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("RAY_AUTH_MODE", "disabled")  # as the Makefile: local Ray without tokens
    env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    return env


TABLES = _tables()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="tables to rerun (see --list)")
    parser.add_argument("--list", action="store_true", help="print every table: name, page, estimated minutes")
    parser.add_argument("--all", action="store_true", help="rerun every table")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    parser.add_argument("--venv", default=str(ROOT / ".venv"), help="environment whose bin/ comes first on PATH")
    args = parser.parse_args(argv)
    if args.list:
        for name, t in TABLES.items():
            print(f"{name:26s} {t.page:20s} ~{t.minutes:g} min, {len(t.steps)} command{'s' * (len(t.steps) > 1)}")
        print(f"{'all':26s} {'':20s} ~{sum(t.minutes for t in TABLES.values()):g} min")
        return 0
    names = list(TABLES) if args.all else args.names
    unknown = [n for n in names if n not in TABLES]
    if unknown or not names:
        parser.error(f"unknown table '{unknown[0]}' (see --list)" if unknown else "name a table, or --all, or --list")
    venv = Path(args.venv)
    if not args.dry_run and not (venv / "bin" / "rledit").exists():
        parser.error(f"no rledit in {venv}/bin: run `make setup` first, or pass --venv")
    for name in names:
        reproduce(name, TABLES[name], environment(venv), dry_run=args.dry_run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
