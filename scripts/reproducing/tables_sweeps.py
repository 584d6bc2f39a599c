"""Builder of docs/sweeps.md: the summary.csv of `rledit sweep` (rledit_ray/sweep.py)."""
from __future__ import annotations

import csv

from .formatting import md_table, pct, pts
from .outputs import Outputs

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
