"""Shared evaluation of an unlearned network, for RL edits and hand-designed baselines alike.

Metric names follow the project's (fractions, not percent):
- forget_train_acc / retain_train_acc: accuracy on the forget / retain set (fit pool; the
  retain set capped at a fixed random RETAIN_TRAIN_ROWS);
  in the SalUn / l1-sparse convention UA = 1 - forget_train_acc, RA = retain_train_acc;
- forget_acc / retain_acc: held-out test images of the forgotten / other classes (TA = retain_acc);
- forget_val_acc / retain_val_acc: the validation pool;
- mia_efficacy: a confidence-based membership-inference attack (SVC on p(true label), as in
  SalUn's SVC_MIA "confidence") trained on retain-train images (members) vs retain-test
  images (non-members), applied to the forget set; the fraction it calls non-member.
  Retraining from scratch is near 1: the forget set then looks like unseen data;
- probe_acc: a linear probe (logistic regression) on the penultimate features (the input of
  the last nn.Linear) trained on the fit pool to tell the forgotten class from the rest,
  balanced accuracy on test. 0.5 = gone from the representation; a head-only edit leaves
  it near the original's, whatever its forget accuracy says;
- relearn_steps: fine-tuning steps (full-batch SGD at RELEARN_LR on RELEARN_IMAGES forget-set
  images of the fit pool, every weight) until the forget test accuracy passes 50% again; 0 when it
  already does, RELEARN_MAX_STEPS + 1 when it does not within the budget. An edit that only hides
  the class at the output relearns in a step or two; retraining from scratch is the reference;
- gap_to_retrain: mean |x - x_retrain| over UA, RA, TA and MIA (lower = closer to the gold standard).

`metrics="targets"` computes only what an edit's targets are stated in (the accuracies; for
bias, every AUC and score) and leaves out the tests of depth (MIA, probes, relearn steps),
which cost most of an evaluation's seconds: what verifying one edit needs.

Bias (`evaluate_bias`, on the held-out test split only): every metric of the bias task's report
(overall_auc, bias_score, final_score, worst_group_bias_auc = min over groups of BPSN and
BNSP AUC, worst_group_acc, counterfactual_gap, ...), the per-group AUCs as
`<subgroup_auc|bpsn_auc|bnsp_auc>_<group>`, and
- group_probe_acc: a linear probe (as above) on the penultimate features trained on the
  train-side rows to name each row's identity group, balanced accuracy on test
  (1 / groups = no linearly readable group information left).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from rledit_ray.baselines.common import last_linear
from rledit_ray.data import LabeledSet, UnlearningSplits
from rledit_ray.errors import UserError

SETS = {"forget_train": "forget_train", "retain_train": "retain_train", "forget_val": "forget_val",
        "retain_val": "retain_val", "forget": "forget_test", "retain": "retain_test"}
# MNIST's retain set (~50k images) would be 70% of an evaluation's forward passes (~1 min on
# 2 busy cores); a fixed random 10k of it (the same rows for every method and seed) gives RA
# within ~0.1 percentage point.
RETAIN_TRAIN_ROWS = 10_000
SUBSET_SEED = 4321
# Rows per side for the attack and the probe: enough for stable numbers, cheap on 2 cores.
MIA_ROWS = 2000
PROBE_ROWS = 3000
GAP_KEYS = ("ua", "retain_train_acc", "retain_acc", "mia_efficacy")
METRICS = ("all", "targets")
RELEARN_IMAGES = 64
RELEARN_LR = 0.0001
RELEARN_MAX_STEPS = 200


def forward(model: nn.Module, data: LabeledSet, batch: int = 2048) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, penultimate features) of the whole network on a set."""
    feats = []
    hook = last_linear(model).register_forward_hook(lambda m, inp, out: feats.append(inp[0].detach()))
    try:
        with torch.inference_mode():
            logits = [model(data.x[i : i + batch]) for i in range(0, len(data), batch)]
    finally:
        hook.remove()
    if not logits:
        return torch.empty(0, 0), torch.empty(0, 0)
    return torch.cat(logits).float(), torch.cat(feats).flatten(1).float()


def confidence(logits: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    return logits.softmax(1).gather(1, y[:, None]).squeeze(1).numpy()


def mia_efficacy(members: np.ndarray, non_members: np.ndarray, target: np.ndarray, seed: int = 0) -> float:
    """Fraction of `target` rows an attack trained on members (1) vs non-members (0) calls
    non-member. Inputs are per-row features (1-D: one feature)."""
    from sklearn.svm import SVC

    rng = np.random.default_rng(seed)
    members, non_members = _rows(members, MIA_ROWS, rng), _rows(non_members, MIA_ROWS, rng)
    n = min(len(members), len(non_members))  # balanced, so the attack has no prior to lean on
    x = np.concatenate([members[:n], non_members[:n]]).reshape(2 * n, -1)
    y = np.concatenate([np.ones(n), np.zeros(n)])
    attack = SVC(C=3, gamma="auto", kernel="rbf").fit(x, y)  # SalUn's SVC_MIA settings
    return float((attack.predict(np.asarray(target).reshape(len(target), -1)) == 0).mean())


def probe_accuracy(train_x: np.ndarray, train_is_forget: np.ndarray, test_x: np.ndarray,
                   test_is_forget: np.ndarray, seed: int = 0) -> float:
    """Balanced test accuracy of a logistic-regression probe for a label of the rows
    ("is the forgotten class", or the identity group)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500, class_weight="balanced",
                                                               random_state=seed))
    probe.fit(train_x, train_is_forget)
    return float(balanced_accuracy_score(test_is_forget, probe.predict(test_x)))


def evaluate_unlearning(model: nn.Module, splits: UnlearningSplits, seed: int = 0,
                        metrics: str = "all") -> dict[str, float]:
    """Every unlearning metric of `model` on `splits`, or only the accuracies (module docstring)."""
    check_metrics(metrics)
    model = model.eval()
    out, cache = {}, {}
    for name, attr in SETS.items():
        data = getattr(splits, attr)
        if name == "retain_train" and len(data) > RETAIN_TRAIN_ROWS:
            data = data.sample(RETAIN_TRAIN_ROWS, torch.Generator().manual_seed(SUBSET_SEED))
        logits, feats = forward(model, data)
        cache[name] = (data, logits, feats)
        out[f"{name}_acc"] = float((logits.argmax(1) == data.y).float().mean()) if len(data) else float("nan")
    out["ua"] = 1.0 - out["forget_train_acc"]
    if metrics == "targets":
        return out

    conf = {k: confidence(cache[k][1], cache[k][0].y) for k in ("retain_train", "retain", "forget_train")}
    out["mia_efficacy"] = mia_efficacy(conf["retain_train"], conf["retain"], conf["forget_train"], seed)

    rng = np.random.default_rng(seed)
    f_tr = _rows(cache["forget_train"][2].numpy(), PROBE_ROWS, rng)
    r_tr = _rows(cache["retain_train"][2].numpy(), PROBE_ROWS, rng)
    f_te, r_te = cache["forget"][2].numpy(), cache["retain"][2].numpy()
    out["probe_acc"] = probe_accuracy(
        np.concatenate([f_tr, r_tr]), np.r_[np.ones(len(f_tr)), np.zeros(len(r_tr))],
        np.concatenate([f_te, r_te]), np.r_[np.ones(len(f_te)), np.zeros(len(r_te))], seed)
    out["relearn_steps"] = relearn_steps(model, splits.forget_train, splits.forget_test, seed)
    return out


def relearn_steps(model: nn.Module, forget_train: LabeledSet, forget_test: LabeledSet, seed: int = 0) -> int:
    """Steps of fine-tuning a copy of `model` on a few forget images until its forget test
    accuracy passes 50% (module docstring)."""
    import copy

    if not len(forget_train) or not len(forget_test):
        return 0
    gen = torch.Generator().manual_seed(seed)
    rows = torch.randperm(len(forget_train), generator=gen)[:RELEARN_IMAGES]
    x, y = forget_train.x[rows], forget_train.y[rows]
    student = copy.deepcopy(model).train().requires_grad_(True)
    optimizer = torch.optim.SGD(student.parameters(), lr=RELEARN_LR)

    def forget_acc() -> float:
        student.eval()
        with torch.inference_mode():
            acc = float((student(forget_test.x).argmax(1) == forget_test.y).float().mean())
        student.train()
        return acc

    for step in range(RELEARN_MAX_STEPS + 1):
        if forget_acc() > 0.5:
            return step
        optimizer.zero_grad()
        nn.functional.cross_entropy(student(x), y).backward()
        optimizer.step()
    return RELEARN_MAX_STEPS + 1


def evaluate_bias(model: nn.Module, task, seed: int = 0, metrics: str = "all") -> dict[str, float]:
    """Every bias metric of `model` (a head on embeddings) on the task's test split, or all but
    the group probe (module docstring)."""
    from rledit_ray.baselines.head_fit import train_side
    from rledit_ray.targets import full_model_scores

    check_metrics(metrics)
    model = model.eval()
    report = task.metrics(full_model_scores(model), pools=("test",))
    out = {k: float(v) for k, v in report.items() if k != "groups"}
    for group, values in report["groups"].items():
        out.update({f"{k}_{group}": float(values[k]) for k in ("subgroup_auc", "bpsn_auc", "bnsp_auc")})
    if metrics == "targets":
        return out
    rng = np.random.default_rng(seed)
    train_feats, train_group = _grouped_features(model, train_side(task))
    test_feats, test_group = _grouped_features(model, task.data.test)
    keep = _rows(np.arange(len(train_group)), PROBE_ROWS, rng)
    out["group_probe_acc"] = probe_accuracy(train_feats[keep], train_group[keep], test_feats, test_group, seed)
    return out


def _grouped_features(model: nn.Module, rows) -> tuple[np.ndarray, np.ndarray]:
    """Penultimate features and the first identity group of the rows that mention one."""
    has_group = rows.membership.any(1)
    _, feats = forward(model, LabeledSet(rows.x[has_group], rows.y[has_group]))
    return feats.numpy(), rows.membership[has_group].float().argmax(1).numpy()


def check_metrics(metrics: str, name: str = "metrics") -> None:
    """Refuse a `metrics` setting other than METRICS (`name`: what the caller calls it)."""
    if metrics not in METRICS:
        raise UserError(f"{name} '{metrics}': choose {' or '.join(METRICS)}")


def gap_to_retrain(metrics: dict, retrain: dict) -> float:
    """NaN where either row was evaluated without the MIA (metrics="targets")."""
    return float(np.mean([abs(metrics.get(k, np.nan) - retrain.get(k, np.nan)) for k in GAP_KEYS]))


def _rows(a: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    return a if len(a) <= n else a[rng.choice(len(a), n, replace=False)]
