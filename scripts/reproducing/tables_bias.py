"""Builders of docs/bias.md: the bias runs (metrics.json, metric names of
rledit_ray/tasks/bias.py) and the lines scripts/bias_edit_probe.py and
scripts/bias_offset_bound.py print."""
from __future__ import annotations

import re

from .formatting import md_table, pts, signed
from .outputs import Outputs

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
