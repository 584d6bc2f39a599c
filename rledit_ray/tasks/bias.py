"""Bias mitigation: make a text classifier's scores fairer across identity groups.

Split discipline (the guard that matters: head edits scored and chosen on one split show
gains that vanish on test):
- reward samples come from the `reward` pool (train side, held out from the head's own
  training rows, whose scores are too optimistic to show its bias) and the reward pairs;
- checkpoints are chosen on `validation`, which the reward never sees;
- only `test` is reported (plus paired bootstrap intervals of the before/after change).

Reward terms (roughly [0, 1], higher is better), computed on the reward samples from the
edited head's logit margin s = logit(harmful) - logit(benign):
- utility: soft overall AUC, mean over positive/negative pairs of sigmoid((z+ - z-) / tau),
  with z = s standardised over the reward samples. Exact AUC moves only when an edit
  swaps the order of two samples; the soft form also rewards moving towards a swap
  (docs/design.md, "Measured findings"), and standardising makes it blind to a mere rescaling of logits
  (else "multiply every logit" would pay).
- objective, one of: `bias_score` (the Jigsaw bias score of the soft subgroup/BPSN/BNSP
  AUCs, power mean p = -5), `worst_group` (the minimum over groups of soft BPSN and BNSP
  AUC), `counterfactual_gap` (1 - mean |p(x) - p(x swapped)| on the reward pairs).
Reported metrics are the exact ones (tasks/bias_metrics.py) on scores = p(harmful).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from rledit_ray import defaults as D
from rledit_ray.data.splits import LabeledSet
from rledit_ray.errors import UserError
from rledit_ray.tasks import bias_metrics as bm

OBJECTIVES = ("bias_score", "worst_group", "counterfactual_gap")
Scores = Callable[[str, LabeledSet], torch.Tensor]
HEADLINE = ("overall_auc", "bias_score", "final_score", "worst_group_bias_auc", "worst_group_acc",
            "counterfactual_gap")


@dataclass
class GroupedSet(LabeledSet):
    """Embeddings, labels and the identity-group membership matrix of one pool."""

    membership: torch.Tensor = None  # bool (rows, groups)

    def take(self, index) -> "GroupedSet":
        return GroupedSet(self.x[index], self.y[index], self.membership[index])


@dataclass
class PairSet:
    original: LabeledSet  # y is unused (zeros); only scores are compared
    swapped: LabeledSet
    group: torch.Tensor


@dataclass
class BiasData:
    groups: tuple[str, ...]
    fit: GroupedSet
    reward: GroupedSet
    validation: GroupedSet
    test: GroupedSet
    pairs: dict[str, PairSet]  # "reward", "validation", "test"


def bias_data(labels: np.ndarray, membership: np.ndarray, groups, splits, embeddings: np.ndarray,
              pair_original: np.ndarray, pair_swapped: np.ndarray, pair_group: np.ndarray) -> BiasData:
    emb, y, mem = torch.from_numpy(embeddings), torch.from_numpy(labels), torch.from_numpy(membership)

    def pool(index):
        index = torch.as_tensor(index, dtype=torch.long)
        return GroupedSet(emb[index], y[index], mem[index])

    def pairs(index):
        index = torch.as_tensor(index, dtype=torch.long)
        zeros = torch.zeros(len(index), dtype=torch.long)
        return PairSet(LabeledSet(torch.from_numpy(pair_original)[index], zeros),
                       LabeledSet(torch.from_numpy(pair_swapped)[index], zeros),
                       torch.from_numpy(pair_group)[index])

    return BiasData(tuple(groups), pool(splits.fit), pool(splits.reward), pool(splits.validation), pool(splits.test),
                    {"reward": pairs(splits.pairs_reward), "validation": pairs(splits.pairs_validation),
                     "test": pairs(splits.pairs_test)})


def _concat(sets: list[GroupedSet]) -> GroupedSet:
    return GroupedSet(torch.cat([s.x for s in sets]), torch.cat([s.y for s in sets]),
                      torch.cat([s.membership for s in sets]))


# ----------------------------------------------------------------------------- soft metrics
QUANTILES = 64


def _quantiles(values: torch.Tensor, k: int = QUANTILES) -> torch.Tensor:
    if len(values) <= k:
        return values
    ordered = values.sort().values
    index = ((torch.arange(k, device=values.device) + 0.5) * len(values) / k).long()
    return ordered[index]


def soft_auc(z: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, tau: float) -> torch.Tensor:
    """Mean sigmoid((z_i - z_j) / tau) over rows i in `positive`, j in `negative` (masks).
    The larger side is summarised by 64 quantiles: O(n) per step instead of O(n^2), and
    still smooth in every score."""
    zp, zn = z[positive], z[negative]
    if len(zp) == 0 or len(zn) == 0:
        return torch.tensor(float("nan"), device=z.device)
    if len(zp) > len(zn):
        zp = _quantiles(zp)
    else:
        zn = _quantiles(zn)
    return torch.sigmoid((zp[:, None] - zn[None, :]) / tau).mean()


def soft_power_mean(values: torch.Tensor, p: float = bm.POWER) -> torch.Tensor:
    values = values[~torch.isnan(values)].clamp_min(1e-6)
    return values.pow(p).mean().pow(1.0 / p)


class BiasTask:
    name = "bias"
    observed_terms = ("utility", "objective", "bias_score_reward", "worst_group_reward", "gap_reward")
    metric_input = "scores"  # metrics() takes a scores(name, set) -> p(harmful) function

    def __init__(self, data: BiasData, samples_per_set: int = D.SAMPLES_PER_SET, seed: int = 0,
                 objective: str = D.BIAS_OBJECTIVE, temperature: float = D.BIAS_TEMPERATURE,
                 reward_pools=D.BIAS_REWARD_POOLS, calibration_coef: float = D.BIAS_CALIBRATION_COEF,
                 pairs_per_set: int | None = D.BIAS_PAIRS_PER_SET):
        if objective not in OBJECTIVES:
            raise UserError(f"unknown bias objective '{objective}': choose one of {', '.join(OBJECTIVES)}")
        if temperature <= 0:
            raise UserError(f"bias temperature must be > 0 (got {temperature})")
        if objective == "counterfactual_gap" and pairs_per_set == 0:
            raise UserError("the counterfactual_gap objective scores the reward's counterfactual pairs: "
                            "set bias.pairs_per_set above 0 (or leave it unset: all pairs)")
        self.data, self.objective, self.tau = data, objective, temperature
        self.calibration_coef = calibration_coef
        gen = torch.Generator().manual_seed(seed)
        pool = _concat([getattr(data, name) for name in reward_pools])
        samples = self._balanced_sample(pool, samples_per_set, gen)
        pairs = data.pairs["reward"]
        if pairs_per_set is not None and pairs_per_set < len(pairs.group):
            # A network evaluated in full per step (a transformer layer) pays per reward row.
            keep = torch.randperm(len(pairs.group), generator=gen)[:pairs_per_set].sort().values
            pairs = PairSet(pairs.original.take(keep), pairs.swapped.take(keep), pairs.group[keep])
        self.n_samples, self.n_pairs = len(samples), len(pairs.group)
        # One batch: samples, then pair originals, then their swaps.
        self.reward_x = torch.cat([samples.x, pairs.original.x, pairs.swapped.x])
        self.reward_y = samples.y
        self.reward_membership = samples.membership
        # Validation AUC of the first network measured (the unedited one: every caller
        # measures "before" first); checkpoint choice refuses edits that lose utility.
        self.reference_val_auc: float | None = None

    @staticmethod
    def _balanced_sample(pool: GroupedSet, n: int, gen: torch.Generator) -> GroupedSet:
        """Up to n rows per (group, label) cell, so a large group cannot drown a small one."""
        first = torch.where(pool.membership.any(1), pool.membership.float().argmax(1), -1)
        picked = []
        for g in torch.unique(first):
            for label in (0, 1):
                rows = torch.nonzero((first == g) & (pool.y == label)).squeeze(1)
                picked.append(rows[torch.randperm(len(rows), generator=gen)[:n]])
        return pool.take(torch.sort(torch.cat(picked)).values)

    def for_rollouts(self) -> "BiasTask":
        """This task without its evaluation pools (what an EnvRunner needs)."""
        rollout = copy.copy(self)
        rollout.data = None
        return rollout

    def to(self, device) -> "BiasTask":
        self.reward_x = self.reward_x.to(device)
        self.reward_y = self.reward_y.to(device)
        self.reward_membership = self.reward_membership.to(device)
        return self

    # ------------------------------------------------------------------ reward
    def reward_terms(self, logits: torch.Tensor, reference_logits: torch.Tensor) -> dict[str, float]:
        return {k: float(v) for k, v in self.reward_tensors(logits, reference_logits).items()}

    def reward_tensors(self, logits: torch.Tensor, reference_logits: torch.Tensor) -> dict[str, torch.Tensor]:
        """The reward terms as tensors, differentiable in `logits` (what gradient probes of
        the same reward optimise; see scripts/bias_edit_probe.py)."""
        n, m = self.n_samples, self.n_pairs
        margin = logits[:n, 1] - logits[:n, 0]
        z = (margin - margin.mean()) / margin.std().clamp_min(1e-6)
        pos, neg = self.reward_y == 1, self.reward_y == 0
        utility = soft_auc(z, pos, neg, self.tau)
        if self.calibration_coef:
            # AUCs ignore the decision threshold; this keeps the share flagged harmful (and
            # so the accuracies at p = 0.5) near the original network's.
            p, p0 = logits[:n].softmax(1)[:, 1], reference_logits[:n].softmax(1)[:, 1]
            utility = utility - self.calibration_coef * (p.mean() - p0.mean()).abs()
        per_metric = {k: [] for k in bm.GROUP_AUCS}
        for g in range(self.reward_membership.shape[1]):
            member = self.reward_membership[:, g]
            per_metric["subgroup_auc"].append(soft_auc(z, member & pos, member & neg, self.tau))
            per_metric["bpsn_auc"].append(soft_auc(z, ~member & pos, member & neg, self.tau))
            per_metric["bnsp_auc"].append(soft_auc(z, member & pos, ~member & neg, self.tau))
        stacked = {k: torch.stack(v) for k, v in per_metric.items()}
        bias = torch.stack([soft_power_mean(v) for v in stacked.values()]).mean()
        worst = torch.nan_to_num(torch.cat([stacked["bpsn_auc"], stacked["bnsp_auc"]]), nan=1.0).min()
        if m:
            p = logits[n:].softmax(1)[:, 1]
            gap = (p[:m] - p[m:]).abs().mean()
        else:
            gap = torch.tensor(0.0)
        objective = {"bias_score": bias, "worst_group": worst, "counterfactual_gap": 1.0 - gap}[self.objective]
        return {"utility": utility, "objective": objective, "bias_score_reward": bias,
                "worst_group_reward": worst, "gap_reward": gap}

    # ------------------------------------------------------------------ evaluation
    def evaluation_sets(self, pools=("validation", "test")) -> dict[str, LabeledSet]:
        out = {}
        for pool in pools:
            if pool == "fit":  # the head's own training rows are not part of this task's data
                continue
            pool_name = "reward" if pool == "train" else pool
            out[pool] = getattr(self.data, pool_name)
            pairs = self.data.pairs[pool_name]
            out[f"pairs_{pool}_original"], out[f"pairs_{pool}_swapped"] = pairs.original, pairs.swapped
        return out

    def pool_scores(self, scores: Scores, pool: str) -> dict[str, np.ndarray]:
        sets = self.evaluation_sets((pool,))
        return {"scores": scores(pool, sets[pool]).cpu().numpy().astype(float),
                "original": scores(f"pairs_{pool}_original", sets[f"pairs_{pool}_original"]).cpu().numpy(),
                "swapped": scores(f"pairs_{pool}_swapped", sets[f"pairs_{pool}_swapped"]).cpu().numpy()}

    def _report(self, pool: str, s: dict[str, np.ndarray]) -> dict:
        labeled = getattr(self.data, pool)
        out = bm.bias_report(s["scores"], labeled.y.numpy(), labeled.membership.numpy(), self.data.groups)
        out["counterfactual_gap"] = bm.counterfactual_gap(s["original"], s["swapped"])
        return out

    def metrics(self, scores: Scores, pools=("fit", "validation", "test")) -> dict:
        """Test metrics under their plain names (with per-group detail); validation metrics
        as flat `<name>_val` scalars (they feed checkpoint choice and the history)."""
        out: dict = {}
        if "validation" in pools:
            val = self._report("validation", self.pool_scores(scores, "validation"))
            out.update({f"{k}_val": v for k, v in val.items() if k != "groups"})
            if self.reference_val_auc is None:
                self.reference_val_auc = val["overall_auc"]
        if "test" in pools:
            out.update(self._report("test", self.pool_scores(scores, "test")))
        return out

    def paired_intervals(self, before: dict[str, np.ndarray], after: dict[str, np.ndarray],
                         rounds: int = 200, seed: int = 0) -> dict[str, list[float]]:
        """95% bootstrap intervals of after - before on test, resampling rows (and pairs)."""
        test = self.data.test
        y, mem = test.y.numpy(), test.membership.numpy()
        out = {}
        for key in ("overall_auc", "bias_score", "worst_group_bias_auc"):
            def diff(rows, key=key):  # headline_aucs: these three numbers alone, fast enough for 400 resamples
                a = bm.headline_aucs(after["scores"][rows], y[rows], mem[rows], self.data.groups)[key]
                b = bm.headline_aucs(before["scores"][rows], y[rows], mem[rows], self.data.groups)[key]
                return a - b
            out[key] = list(bm.bootstrap_interval(diff, len(y), rounds, seed))
        gap_a, gap_b = np.abs(after["original"] - after["swapped"]), np.abs(before["original"] - before["swapped"])
        out["counterfactual_gap"] = list(bm.bootstrap_interval(
            lambda rows: float(gap_a[rows].mean() - gap_b[rows].mean()), len(gap_a), rounds, seed))
        return out

    def selection_score(self, metrics: dict) -> float:
        """Scale-free validation score for checkpoints: final score plus the worst group's
        BPSN/BNSP AUC, minus a steep penalty once overall AUC drops by more than half a
        point below the unedited network's (the budget on test is one point; validation
        is noisier than that)."""
        reference = self.reference_val_auc if self.reference_val_auc is not None else metrics["overall_auc_val"]
        penalty = 10.0 * max(0.0, reference - metrics["overall_auc_val"] - 0.005)
        return metrics["final_score_val"] + metrics["worst_group_bias_auc_val"] - penalty

    # ------------------------------------------------------------------ reporting hooks
    report_rows = [(k, k.replace("_", " ") + " (test)") for k in HEADLINE]
    report_note = ("checkpoint chosen on the validation split (never in the reward); every number above "
                   "is on the held-out test split; counterfactual gap is a mean |difference| of p(harmful).")
    curve_keys = [("bias_score_val", "bias score (val)"), ("overall_auc_val", "overall AUC (val)"),
                  ("worst_group_bias_auc_val", "worst-group BPSN/BNSP AUC (val)")]

    @staticmethod
    def summary(metrics: dict) -> str:
        return (f"overall AUC {metrics['overall_auc']:.2%} bias score {metrics['bias_score']:.2%} "
                f"worst-group AUC {metrics['worst_group_bias_auc']:.2%} gap {metrics['counterfactual_gap']:.3f} (test)")

    @staticmethod
    def progress(row: dict) -> str:
        if "bias_score_val" not in row:
            return ""
        return (f" | val AUC {row['overall_auc_val']:.2%} bias {row['bias_score_val']:.2%} "
                f"worst {row['worst_group_bias_auc_val']:.2%}")

    @staticmethod
    def met_stop(row: dict, training) -> bool:
        return False  # no natural target: run the iteration budget, keep the best checkpoint

    def report_sections(self, metrics: dict) -> list[str]:
        before, after = metrics["before"], metrics["after"]
        lines = ["## Per-group metrics (test)", "",
                 "| group | rows | subgroup AUC | BPSN AUC | BNSP AUC | accuracy | FPR gap | FNR gap |",
                 "|---|---|---|---|---|---|---|---|"]
        for g in self.data.groups:
            b, a = before["groups"][g], after["groups"][g]
            cells = [f"{100 * b[k]:.1f} → {100 * a[k]:.1f}" for k in ("subgroup_auc", "bpsn_auc", "bnsp_auc", "accuracy")]
            cells += [f"{100 * b[k]:+.1f} → {100 * a[k]:+.1f}" for k in ("fpr_gap", "fnr_gap")]
            lines.append(f"| {g} | {a['size']} | " + " | ".join(cells) + " |")
        intervals = metrics.get("intervals")
        if intervals:
            lines += ["", "Change after - before on test (points on the 0-100 scale; the counterfactual gap "
                      "in points of probability), with a paired 95% bootstrap interval (200 resamples of "
                      "the test rows, or of the test pairs for the gap):", ""]
            for key, (lo, hi) in intervals.items():
                delta = after[key] - before[key]
                lines.append(f"- {key}: {100 * delta:+.2f} points [{100 * lo:+.2f}, {100 * hi:+.2f}]")
        return lines
