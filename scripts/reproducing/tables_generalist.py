"""Builders of docs/generalist.md: the generalist runs (metrics.json: history, per_request,
heldout_classes), `rledit compare-requests`'s comparison.md (compare_requests.py) and the
timings `rledit edit --repeat` writes."""
from __future__ import annotations

from .formatting import md_table, pct, pct_range
from .outputs import Outputs

# The stability columns' target: the unlearning target of the docs (forget <= 1%, retain >= 97%)
# on the validation means over the training requests. A run is stable when, once it has met
# it, its selection score (validation retain minus forget) stays within 10% of its best.
TARGET_FORGET, TARGET_RETAIN, STABLE_SHARE = 0.01, 0.97, 0.9


def stability(history: list[dict]) -> tuple[str, str]:
    """(first iteration that met the target, lowest later score / best score), as printed."""
    rows = [h for h in history if "selection_score" in h]
    met = [h["iteration"] for h in rows if h["forget_val_acc"] <= TARGET_FORGET and h["retain_val_acc"] >= TARGET_RETAIN]
    if not met:
        return "not met", "-"
    best = max(h["selection_score"] for h in rows)
    lowest = min(h["selection_score"] for h in rows if h["iteration"] >= met[0])
    verdict = "kept" if lowest >= STABLE_SHARE * best else "lost"
    return str(met[0]), f"{lowest / best:.1%} ({verdict})"


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
                     *stability(m["history"]),
                     " / ".join(pct(r["forget_acc"]) for r in held), pct_range([r["retain_acc"] for r in held])])
    return md_table(["run", "iterations (best)", "env steps", "wall",
                     "training requests at the best iteration: val forget mean / max",
                     "val target first met", "lowest score after it / best",
                     "held-out test forget " + " / ".join(map(str, classes)), "held-out test retain"], rows)


def requests_table(o: Outputs) -> str:
    """docs/generalist.md: `rledit compare-requests`'s comparison.md, then the unedited network
    and a random policy on the same held-out requests (the runs' metrics.json)."""
    # Without its figure link: the figure stays in the run folder, beside comparison.md.
    lines = o.path(f"{o.table.steps[-1].run}/comparison.md").read_text().strip().splitlines()
    text = "\n".join(line for line in lines if not line.startswith("![")).strip()
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
