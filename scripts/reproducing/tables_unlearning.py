"""Builders of docs/results.md (the unlearning runs: metrics.json of rledit_ray/training.py,
the columns of report.py's summary_table) and docs/baselines.md (the comparison.md that
compare.py writes, both tasks). Metric names: rledit_ray/tasks/unlearning.py."""
from __future__ import annotations

from pathlib import Path

from .formatting import md_table, pct, signed
from .outputs import Outputs
from .pages import write_atomically

FIGURES = {"class_accuracy.png": "docs/figures/unlearning_class_accuracy.png",  # a run's figure -> the page's copy
           "edit.png": "docs/figures/unlearning_mask_edit.png"}


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
    text = o.path(f"{o.table.steps[-1].run}/comparison.md").read_text()
    # Its figure lies beside it, not beside the docs page.
    return "\n".join(line for line in text.splitlines() if not line.startswith("![")).strip()


def optimiser_table(o: Outputs) -> str:
    """docs/deep-edits.md: one row per run (labels "optimiser|layer (dims)|world"), whether it
    met the test target (forget <= 1% and retain >= 97% in MaskWorld, <= 2% and >= 95% in
    ShiftWorld: the deep-edit issue's bars), where it met the validation target (the line
    training.py prints when it stops early) and what it cost."""
    import re

    rows = []
    for i, step in enumerate(o.table.steps):
        m = o.metrics(step)
        a = m["after"]
        limits = (0.01, 0.97) if m["world"] == "mask" else (0.02, 0.95)
        met = a["forget_acc"] <= limits[0] and a["retain_acc"] >= limits[1]
        stop = re.search(r"validation target met at iteration (\d+)", o.stdout(i))
        rows.append([*step.label.split("|"), str(m["seed"]), pct(a["forget_acc"]), pct(a["retain_acc"]),
                     "yes" if met else "no", str(m["env_steps"]), f"iteration {stop.group(1)}" if stop else "no",
                     f"{m['wall_time_s']:.0f}"])
    return md_table(["optimiser", "layer (action dims)", "world", "seed", "forget (test)", "retain (test)",
                     "test target met", "env steps", "validation target met (stopped at)", "wall s"], rows)


def deep_layer_table(o: Outputs) -> str:
    """docs/deep-edits.md, a deeper layer's runs: one row per seed against the deep-edit
    issue's bar for conv2 (forget <= 2%, retain >= 95% on test, each run <= 15 minutes)."""
    rows = []
    for step in o.table.steps:
        m = o.metrics(step)
        a = m["after"]
        met = a["forget_acc"] <= 0.02 and a["retain_acc"] >= 0.95 and m["wall_time_s"] <= 15 * 60
        rows.append([step.label, pct(a["forget_acc"]), pct(a["retain_acc"]), "yes" if met else "no",
                     str(m["iterations"]), str(m["env_steps"]), f"{m['wall_time_s'] / 60:.1f} min"])
    return md_table(["command", "forget (test)", "retain (test)", "target met", "iterations", "env steps",
                     "wall time"], rows)


def figures_table(o: Outputs) -> str:
    """docs/outputs.md: copies the run's two figures over the page's, then one row per class
    (test accuracy before and after, the change in points: what class_accuracy.png draws) and
    what the run cost."""
    step = o.table.steps[0]
    for name, dest in FIGURES.items():
        o.path(dest).parent.mkdir(parents=True, exist_ok=True)
        write_atomically(o.path(dest), o.path(f"{step.run}/{name}").read_bytes())
    m = o.metrics(step)
    acc = m["per_class_test_acc"]
    rows = [[str(k), pct(b), pct(a), signed(a - b)] for k, (b, a) in enumerate(zip(acc["before"], acc["after"]))]
    b, a = m["before"], m["after"]
    return (md_table(["class", "test accuracy before", "after", "change (points)"], rows)
            + f"\n\nForget accuracy on test {pct(b['forget_acc'])} -> {pct(a['forget_acc'])}, retain "
            f"{pct(b['retain_acc'])} -> {pct(a['retain_acc'])}; {m['iterations']} PPO iterations, "
            f"{m['env_steps']} env steps, {m['wall_time_s']:.0f} s.")
