"""Bias metrics for a binary classifier with identity subgroups (numpy, exact).

Definitions follow the Jigsaw Unintended Bias competition (Borkan et al. 2019):
- Subgroup AUC: AUC on the rows that mention the subgroup;
- BPSN AUC (background positive, subgroup negative): AUC on subgroup negatives plus
  background positives (low = the model flags benign mentions of the group);
- BNSP AUC (background negative, subgroup positive): AUC on subgroup positives plus
  background negatives (low = the model misses harm aimed at the group);
- bias score: mean over the three metrics of their generalized power mean (p = -5) over
  subgroups, which weighs the worst groups most; final score = 0.25 overall AUC + 0.75 bias.
Plus worst-group accuracy, per-group FPR/FNR gaps (group rate minus background rate) and
the counterfactual gap: mean |score(x) - score(x with the identity term swapped)|.
All values are fractions; a metric with one class missing is NaN and skipped by the means.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from scipy.stats import rankdata

POWER = -5.0
OVERALL_WEIGHT = 0.25
GROUP_AUCS = ("subgroup_auc", "bpsn_auc", "bnsp_auc")


def auc(scores, labels) -> float:
    """ROC AUC (Mann-Whitney, ties count one half); NaN when a class is missing."""
    scores, labels = np.asarray(scores, float), np.asarray(labels).astype(bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def subgroup_auc(scores, labels, member) -> float:
    member = np.asarray(member, bool)
    return auc(np.asarray(scores)[member], np.asarray(labels)[member])


def bpsn_auc(scores, labels, member) -> float:
    member, labels = np.asarray(member, bool), np.asarray(labels).astype(bool)
    rows = (member & ~labels) | (~member & labels)
    return auc(np.asarray(scores)[rows], labels[rows])


def bnsp_auc(scores, labels, member) -> float:
    member, labels = np.asarray(member, bool), np.asarray(labels).astype(bool)
    rows = (member & labels) | (~member & ~labels)
    return auc(np.asarray(scores)[rows], labels[rows])


def power_mean(values, p: float = POWER) -> float:
    values = np.asarray([v for v in values if not np.isnan(v)], float)
    if len(values) == 0:
        return float("nan")
    if np.any(values <= 0):  # a zero AUC dominates any negative-power mean
        return 0.0
    return float(np.mean(values ** p) ** (1.0 / p))


def bias_score(groups: dict[str, dict[str, float]], p: float = POWER) -> float:
    """Mean over Subgroup/BPSN/BNSP AUC of the power mean over groups."""
    return float(np.mean([power_mean([g[k] for g in groups.values()], p) for k in GROUP_AUCS]))


def final_score(overall_auc: float, bias: float, weight: float = OVERALL_WEIGHT) -> float:
    return weight * overall_auc + (1 - weight) * bias


def accuracy(pred, labels) -> float:
    pred, labels = np.asarray(pred), np.asarray(labels)
    return float((pred == labels).mean()) if len(labels) else float("nan")


def error_rates(pred, labels) -> tuple[float, float]:
    """(false positive rate, false negative rate); NaN where a class is missing."""
    pred, labels = np.asarray(pred).astype(bool), np.asarray(labels).astype(bool)
    fpr = float(pred[~labels].mean()) if (~labels).any() else float("nan")
    fnr = float((~pred[labels]).mean()) if labels.any() else float("nan")
    return fpr, fnr


def counterfactual_gap(scores, swapped_scores) -> float:
    scores, swapped_scores = np.asarray(scores, float), np.asarray(swapped_scores, float)
    return float(np.abs(scores - swapped_scores).mean()) if len(scores) else float("nan")


def group_metrics(scores, labels, membership, groups, threshold: float = 0.5) -> dict[str, dict[str, float]]:
    scores, labels = np.asarray(scores, float), np.asarray(labels).astype(int)
    pred = (scores >= threshold).astype(int)
    out = {}
    for g, name in enumerate(groups):
        member = np.asarray(membership)[:, g].astype(bool)
        fpr, fnr = error_rates(pred[member], labels[member])
        bg_fpr, bg_fnr = error_rates(pred[~member], labels[~member])
        out[name] = {
            "subgroup_auc": subgroup_auc(scores, labels, member),
            "bpsn_auc": bpsn_auc(scores, labels, member),
            "bnsp_auc": bnsp_auc(scores, labels, member),
            "accuracy": accuracy(pred[member], labels[member]),
            "fpr_gap": fpr - bg_fpr,
            "fnr_gap": fnr - bg_fnr,
            "size": int(member.sum()),
        }
    return out


def bias_report(scores, labels, membership, groups, threshold: float = 0.5) -> dict:
    """Every reported bias metric for positive-class scores on one labelled set."""
    scores, labels = np.asarray(scores, float), np.asarray(labels).astype(int)
    per_group = group_metrics(scores, labels, membership, groups, threshold)
    overall = auc(scores, labels)
    bias = bias_score(per_group)
    finite = lambda vals: [v for v in vals if not np.isnan(v)] or [float("nan")]  # noqa: E731
    return {
        "overall_auc": overall,
        "accuracy": accuracy((scores >= threshold).astype(int), labels),
        "bias_score": bias,
        "final_score": final_score(overall, bias),
        "worst_group_acc": min(finite([g["accuracy"] for g in per_group.values()])),
        # The minimum over groups of BPSN and BNSP AUC: the headline fairness number (docs/bias.md).
        "worst_group_bias_auc": min(finite([g[k] for g in per_group.values() for k in ("bpsn_auc", "bnsp_auc")])),
        "max_fpr_gap": max(finite([abs(g["fpr_gap"]) for g in per_group.values()])),
        "max_fnr_gap": max(finite([abs(g["fnr_gap"]) for g in per_group.values()])),
        "groups": per_group,
    }


def bootstrap_interval(statistic: Callable[[np.ndarray], float], n: int, rounds: int = 200,
                       seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of statistic(rows) over `rounds` resamples of n rows with
    replacement. Pass a statistic of a difference (after - before on the same rows) for a
    paired interval."""
    if n == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    values = np.array([statistic(rng.integers(0, n, n)) for _ in range(rounds)], float)
    values = values[~np.isnan(values)]
    if len(values) == 0:
        return float("nan"), float("nan")
    tail = (1 - level) / 2 * 100
    return float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))
