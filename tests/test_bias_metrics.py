"""Bias metrics on cases small enough to compute by hand."""
import math

import numpy as np
import pytest

from rledit_ray.tasks import bias_metrics as bm

# Six rows, two groups (a: rows 0-2, b: rows 3-5).
SCORES = np.array([0.9, 0.2, 0.6, 0.7, 0.4, 0.1])
LABELS = np.array([1, 0, 0, 1, 1, 0])
MEMBER_A = np.array([1, 1, 1, 0, 0, 0], bool)


def test_auc_counts_ordered_pairs_and_half_ties():
    # positives 0.35, 0.8 vs negatives 0.1, 0.4: ordered pairs 3 of 4
    assert bm.auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    assert bm.auc([0.5, 0.5], [0, 1]) == pytest.approx(0.5)
    assert math.isnan(bm.auc([0.1, 0.2], [1, 1]))


def test_subgroup_bpsn_bnsp_by_hand():
    # subgroup a: positive 0.9 vs negatives 0.2, 0.6 -> 2/2
    assert bm.subgroup_auc(SCORES, LABELS, MEMBER_A) == pytest.approx(1.0)
    # BPSN a: background positives 0.7, 0.4 vs subgroup negatives 0.2, 0.6 -> (2 + 1) / 4
    assert bm.bpsn_auc(SCORES, LABELS, MEMBER_A) == pytest.approx(0.75)
    # BNSP a: subgroup positive 0.9 vs background negative 0.1 -> 1
    assert bm.bnsp_auc(SCORES, LABELS, MEMBER_A) == pytest.approx(1.0)
    # BPSN b: background positive 0.9 vs subgroup negative 0.1 -> 1
    assert bm.bpsn_auc(SCORES, LABELS, ~MEMBER_A) == pytest.approx(1.0)
    # BNSP b: subgroup positives 0.7, 0.4 vs background negatives 0.2, 0.6 -> 3/4
    assert bm.bnsp_auc(SCORES, LABELS, ~MEMBER_A) == pytest.approx(0.75)


def test_power_mean_bias_score_and_final_score():
    assert bm.power_mean([0.5, 1.0], p=-5) == pytest.approx(16.5 ** -0.2)
    assert bm.power_mean([0.8, 0.8, float("nan")]) == pytest.approx(0.8)
    groups = {"a": {"subgroup_auc": 1.0, "bpsn_auc": 0.75, "bnsp_auc": 1.0},
              "b": {"subgroup_auc": 1.0, "bpsn_auc": 1.0, "bnsp_auc": 0.75}}
    pm = ((0.75 ** -5 + 1) / 2) ** -0.2
    assert bm.bias_score(groups) == pytest.approx((1.0 + 2 * pm) / 3)
    assert bm.final_score(0.8, 0.6) == pytest.approx(0.25 * 0.8 + 0.75 * 0.6)


def test_report_rates_gaps_and_worst_group():
    report = bm.bias_report(SCORES, LABELS, np.stack([MEMBER_A, ~MEMBER_A], 1), ("a", "b"))
    a, b = report["groups"]["a"], report["groups"]["b"]
    # predictions at 0.5: [1, 0, 1, 1, 0, 0]; a: 2/3 right, b: 2/3 right
    assert a["accuracy"] == pytest.approx(2 / 3) and report["worst_group_acc"] == pytest.approx(2 / 3)
    # a: FPR 1/2, FNR 0; background b: FPR 0/1, FNR 1/2
    assert a["fpr_gap"] == pytest.approx(0.5) and a["fnr_gap"] == pytest.approx(-0.5)
    assert b["fpr_gap"] == pytest.approx(-0.5) and b["fnr_gap"] == pytest.approx(0.5)
    assert report["worst_group_bias_auc"] == pytest.approx(0.75)
    assert report["overall_auc"] == pytest.approx(bm.auc(SCORES, LABELS))
    assert report["final_score"] == pytest.approx(0.25 * report["overall_auc"] + 0.75 * report["bias_score"])


def test_counterfactual_gap_and_error_rates():
    assert bm.counterfactual_gap([0.9, 0.2], [0.6, 0.4]) == pytest.approx(0.25)
    assert bm.error_rates([1, 0, 1, 0], [0, 0, 1, 1]) == pytest.approx((0.5, 0.5))


def test_bootstrap_interval():
    data = np.arange(100, dtype=float)
    lo, hi = bm.bootstrap_interval(lambda rows: data[rows].mean(), len(data), rounds=300, seed=1)
    assert lo < 49.5 < hi and hi - lo < 25
    assert bm.bootstrap_interval(lambda rows: 3.0, 10, rounds=20) == (3.0, 3.0)
    assert all(math.isnan(v) for v in bm.bootstrap_interval(lambda rows: 1.0, 0))
