"""Bias metrics for a binary classifier with identity subgroups (exact, from the libraries).

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

What is reported comes from the libraries: AUCs from scikit-learn's `roc_auc_score`, accuracy
and error rates per group (and of its background) from fairlearn's `MetricFrame`. The
bootstrap intervals need ~400 reports of three AUC-based numbers per run, so they use
`rank_auc`, the Mann-Whitney form of the same AUC (7x faster than roc_auc_score on a few
thousand rows; the two agree to 1e-12, tests/test_library_metrics.py checks them on the
RedditBias test split). The smooth surrogates the reward uses live in tasks/bias.py.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

POWER = -5.0
OVERALL_WEIGHT = 0.25
GROUP_AUCS = ("subgroup_auc", "bpsn_auc", "bnsp_auc")
AucFn = Callable[[np.ndarray, np.ndarray], float]


def _both_classes(labels: np.ndarray) -> bool:
    return bool(labels.any()) and not bool(labels.all())


def auc(scores, labels) -> float:
    """ROC AUC by scikit-learn (ties count one half); NaN when a class is missing."""
    from sklearn.metrics import roc_auc_score

    scores, labels = np.asarray(scores, float), np.asarray(labels).astype(bool)
    return float(roc_auc_score(labels, scores)) if _both_classes(labels) else float("nan")


def rank_auc(scores, labels) -> float:
    """The same AUC by the Mann-Whitney rank formula (for the bootstrap's many resamples)."""
    scores, labels = np.asarray(scores, float), np.asarray(labels).astype(bool)
    if not _both_classes(labels):
        return float("nan")
    from scipy.stats import rankdata  # here: scipy.stats costs 0.7 s to import, and unlearning runs never rank

    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def subgroup_auc(scores, labels, member, auc_fn: AucFn = auc) -> float:
    member = np.asarray(member, bool)
    return auc_fn(np.asarray(scores)[member], np.asarray(labels)[member])


def bpsn_auc(scores, labels, member, auc_fn: AucFn = auc) -> float:
    member, labels = np.asarray(member, bool), np.asarray(labels).astype(bool)
    rows = (member & ~labels) | (~member & labels)
    return auc_fn(np.asarray(scores)[rows], labels[rows])


def bnsp_auc(scores, labels, member, auc_fn: AucFn = auc) -> float:
    member, labels = np.asarray(member, bool), np.asarray(labels).astype(bool)
    rows = (member & labels) | (~member & ~labels)
    return auc_fn(np.asarray(scores)[rows], labels[rows])


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
    from sklearn.metrics import accuracy_score

    return float(accuracy_score(labels, pred)) if len(labels) else float("nan")


def _when(present: int | None, metric):
    """`metric`, NaN on rows lacking class `present` (the rate is undefined there, where
    fairlearn's functions would say 0)."""
    def guarded(y_true, y_pred) -> float:
        y_true = np.asarray(y_true)
        if len(y_true) == 0 or (present is not None and not (y_true == present).any()):
            return float("nan")
        return float(metric(y_true, y_pred))
    return guarded


def error_rates(pred, labels) -> tuple[float, float]:
    """(false positive rate, false negative rate) by fairlearn; NaN where a class is missing."""
    from fairlearn.metrics import false_negative_rate, false_positive_rate

    labels, pred = np.asarray(labels).astype(int), np.asarray(pred).astype(int)
    return _when(0, false_positive_rate)(labels, pred), _when(1, false_negative_rate)(labels, pred)


def group_rates(pred, labels, member) -> dict[str, dict[str, float]]:
    """Accuracy, false positive and false negative rate of a group's rows ("group") and of
    the rest ("background"), by fairlearn's MetricFrame over membership."""
    import sklearn
    from fairlearn.metrics import MetricFrame, false_negative_rate, false_positive_rate
    from sklearn.metrics import accuracy_score

    metrics = {"accuracy": _when(None, accuracy_score), "fpr": _when(0, false_positive_rate),
               "fnr": _when(1, false_negative_rate)}
    # The inputs are the project's own 0/1 arrays: scikit-learn's per-call checks would
    # cost more than the counting (a report calls these 45 times).
    with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
        by_group = MetricFrame(metrics=metrics, y_true=np.asarray(labels), y_pred=np.asarray(pred),
                               sensitive_features=np.asarray(member, bool)).by_group
    sides = {"group": True, "background": False}
    return {side: {k: float(by_group.loc[value, k]) if value in by_group.index else float("nan") for k in metrics}
            for side, value in sides.items()}


def counterfactual_gap(scores, swapped_scores) -> float:
    scores, swapped_scores = np.asarray(scores, float), np.asarray(swapped_scores, float)
    return float(np.abs(scores - swapped_scores).mean()) if len(scores) else float("nan")


def group_metrics(scores, labels, membership, groups, threshold: float = 0.5) -> dict[str, dict[str, float]]:
    scores, labels = np.asarray(scores, float), np.asarray(labels).astype(int)
    pred = (scores >= threshold).astype(int)
    out = {}
    for g, name in enumerate(groups):
        member = np.asarray(membership)[:, g].astype(bool)
        rates = group_rates(pred, labels, member)
        out[name] = {
            "subgroup_auc": subgroup_auc(scores, labels, member),
            "bpsn_auc": bpsn_auc(scores, labels, member),
            "bnsp_auc": bnsp_auc(scores, labels, member),
            "accuracy": rates["group"]["accuracy"],
            "fpr_gap": rates["group"]["fpr"] - rates["background"]["fpr"],
            "fnr_gap": rates["group"]["fnr"] - rates["background"]["fnr"],
            "size": int(member.sum()),
        }
    return out


def headline_aucs(scores, labels, membership, groups, auc_fn: AucFn = rank_auc) -> dict[str, float]:
    """overall_auc, bias_score and worst_group_bias_auc alone, by `auc_fn` (the bootstrap's
    resamples need only these; see the module docstring)."""
    scores, labels = np.asarray(scores, float), np.asarray(labels).astype(int)
    per_group = {}
    for g, name in enumerate(groups):
        member = np.asarray(membership)[:, g].astype(bool)
        per_group[name] = {k: f(scores, labels, member, auc_fn) for k, f in
                           (("subgroup_auc", subgroup_auc), ("bpsn_auc", bpsn_auc), ("bnsp_auc", bnsp_auc))}
    worst = [g[k] for g in per_group.values() for k in ("bpsn_auc", "bnsp_auc") if not np.isnan(g[k])]
    return {"overall_auc": auc_fn(scores, labels), "bias_score": bias_score(per_group),
            "worst_group_bias_auc": min(worst) if worst else float("nan")}


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
