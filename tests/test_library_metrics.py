"""The reported bias metrics come from scikit-learn (AUCs) and fairlearn (per-group rates):
they must give the numbers of the hand-written formulas they replaced (kept here, as they
were in tasks/bias_metrics.py, as the reference) to 1e-6, NaN where those gave NaN."""
import math

import numpy as np
import pytest
from scipy.stats import rankdata

from rledit_ray.tasks import bias_metrics as bm


# ----------------------------------------------------------------------------- the reference
def hand_auc(scores, labels) -> float:
    """ROC AUC (Mann-Whitney, ties count one half); NaN when a class is missing."""
    scores, labels = np.asarray(scores, float), np.asarray(labels).astype(bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def hand_error_rates(pred, labels) -> tuple[float, float]:
    pred, labels = np.asarray(pred).astype(bool), np.asarray(labels).astype(bool)
    fpr = float(pred[~labels].mean()) if (~labels).any() else float("nan")
    fnr = float((~pred[labels]).mean()) if labels.any() else float("nan")
    return fpr, fnr


def hand_accuracy(pred, labels) -> float:
    pred, labels = np.asarray(pred), np.asarray(labels)
    return float((pred == labels).mean()) if len(labels) else float("nan")


def hand_report(scores, labels, membership, groups) -> dict:
    """overall AUC and accuracy, and per group the six numbers bias_report's groups hold."""
    scores, labels = np.asarray(scores, float), np.asarray(labels).astype(int)
    pred = (scores >= 0.5).astype(int)
    out = {"overall_auc": hand_auc(scores, labels), "accuracy": hand_accuracy(pred, labels)}
    for g, name in enumerate(groups):
        member = np.asarray(membership)[:, g].astype(bool)
        bpsn = (member & (labels == 0)) | (~member & (labels == 1))
        bnsp = (member & (labels == 1)) | (~member & (labels == 0))
        fpr, fnr = hand_error_rates(pred[member], labels[member])
        bg_fpr, bg_fnr = hand_error_rates(pred[~member], labels[~member])
        out.update({f"{name}/subgroup_auc": hand_auc(scores[member], labels[member]),
                    f"{name}/bpsn_auc": hand_auc(scores[bpsn], labels[bpsn]),
                    f"{name}/bnsp_auc": hand_auc(scores[bnsp], labels[bnsp]),
                    f"{name}/accuracy": hand_accuracy(pred[member], labels[member]),
                    f"{name}/fpr_gap": fpr - bg_fpr, f"{name}/fnr_gap": fnr - bg_fnr})
    return out


def largest_difference(scores, labels, membership, groups) -> float:
    """max |library - reference| over every number both give; NaN must meet NaN."""
    library = bm.bias_report(scores, labels, membership, groups)
    flat = {"overall_auc": library["overall_auc"], "accuracy": library["accuracy"]}
    for name, values in library["groups"].items():
        flat.update({f"{name}/{k}": values[k] for k in ("subgroup_auc", "bpsn_auc", "bnsp_auc", "accuracy",
                                                         "fpr_gap", "fnr_gap")})
    reference = hand_report(scores, labels, membership, groups)
    assert flat.keys() == reference.keys()
    for key in flat:
        assert math.isnan(flat[key]) == math.isnan(reference[key]), key
    return max(abs(flat[k] - reference[k]) for k in flat if not math.isnan(flat[k]))


# ----------------------------------------------------------------------------- the checks
def test_library_metrics_agree_on_ties_overlapping_groups_and_missing_classes():
    rng = np.random.default_rng(0)
    n = 400
    labels = rng.integers(0, 2, n)
    scores = np.round(rng.uniform(0, 1, n) * 0.6 + 0.4 * labels, 1)  # one decimal: many ties
    membership = rng.uniform(0, 1, (n, 4)) < 0.3  # rows in several groups, or none
    membership[:, 2] = labels == 1  # a group without negatives: its FPR and AUCs are undefined
    membership[:, 3] = False  # an empty group
    assert largest_difference(scores, labels, membership, ("a", "b", "positives", "empty")) < 1e-12


@pytest.mark.slow
def test_library_metrics_agree_on_the_redditbias_test_split():
    """On the real data and head (embeds ~11.5k texts once when the cache is cold): the
    unedited head's test scores, and those of a head whose output layer was masked."""
    import copy

    import torch

    from rledit_ray.build import build_parts
    from rledit_ray.config import build_config
    from rledit_ray.targets import full_model_scores

    parts = build_parts(build_config({"task": "bias"}))
    test, groups = parts.task.data.test, parts.task.data.groups
    assert len(test) > 1000 and len(groups) == 5
    edited = copy.deepcopy(parts.model)
    with torch.no_grad():
        edited.fc2.weight.mul_(torch.from_numpy(np.random.default_rng(1).uniform(0.5, 1.5, (2, 64))).float())
    for model in (parts.model, edited):
        scores = full_model_scores(model)("test", test).numpy().astype(float)
        labels, membership = test.y.numpy(), test.membership.numpy()
        difference = largest_difference(scores, labels, membership, groups)
        print(f"redditbias test ({len(labels)} rows): max |library - hand-written| = {difference:.3e}")
        assert difference < 1e-6
        # the bootstrap's fast path (rank AUC) against the reported (scikit-learn) numbers
        fast, reported = bm.headline_aucs(scores, labels, membership, groups), bm.bias_report(scores, labels,
                                                                                               membership, groups)
        assert max(abs(fast[k] - reported[k]) for k in fast) < 1e-12
