"""Machine unlearning: make a classifier forget some classes and keep the others.

Reward terms (both roughly in [0, 1], higher is better), computed from the edited network's
logits on the reward samples (N forget + N retain images from the fit pool):
- utility: mean probability of the true label on retain samples, minus `kl_coef` times
  the KL divergence from the original network's predictions on them;
- objective: how far each forget sample's logit margin (true-class logit minus best other
  logit) has moved from its original value towards `target_margin`, a value somewhat
  below zero, clipped to [0, 1] per sample and averaged.
Accuracy alone is too sparse a reward (random edits almost never flip a prediction; see
docs/design.md, "Measured findings"); the dense terms above are only the reward. What we report are
accuracies, on each pool: fit (the paper's forget/retain sets), validation, test.
"""
from __future__ import annotations

import copy
from typing import Callable

import torch

from rledit_ray import defaults as D
from rledit_ray.data import LabeledSet, UnlearningSplits

Predict = Callable[[str, LabeledSet], torch.Tensor]


def true_class_margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """logit of the true class minus the best other logit (negative = misclassified)."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    others = logits.scatter(1, y[:, None], float("-inf"))
    return true - others.max(1).values


class UnlearningTask:
    name = "unlearning"
    observed_terms = ("utility", "objective", "forget_acc_reward", "retain_acc_reward")
    metric_input = "labels"  # metrics() takes a predict(name, set) -> labels function

    def __init__(
        self,
        splits: UnlearningSplits,
        samples_per_set: int = D.SAMPLES_PER_SET,
        seed: int = 0,
        target_margin: float = D.TARGET_MARGIN,
        kl_coef: float = D.KL_COEF,
    ):
        self.splits = splits
        self.target_margin = target_margin
        self.kl_coef = kl_coef
        gen = torch.Generator().manual_seed(seed)
        forget = splits.forget_train.sample(samples_per_set, gen)
        retain = splits.retain_train.sample(samples_per_set, gen)
        self.n_forget = len(forget)
        # One batch, forget rows first: the world runs a single forward pass per step.
        self.reward_x = torch.cat([forget.x, retain.x])
        self.reward_y = torch.cat([forget.y, retain.y])
        self._reference_margins_of: dict[int, tuple] = {}

    def for_rollouts(self) -> "UnlearningTask":
        """This task without its evaluation pools (what an EnvRunner needs)."""
        rollout = copy.copy(self)
        rollout.splits, rollout._reference_margins_of = None, {}
        return rollout

    def to(self, device) -> "UnlearningTask":
        self.reward_x = self.reward_x.to(device)
        self.reward_y = self.reward_y.to(device)
        return self

    def reward_terms(self, logits: torch.Tensor, reference_logits: torch.Tensor) -> dict[str, float]:
        """Dense reward terms for edited logits, given the original network's logits.

        Runs every env step, so it avoids softmax/log_softmax over the 10 classes (measured
        6x slower than logsumexp on CPU for this shape) and shares one max over all rows."""
        f, y = self.n_forget, self.reward_y
        margin0, span, below0 = self._reference_margins(reference_logits)
        # One margin for every row: it gives the forget objective and, by its sign, the
        # hits (no separate argmax pass).
        true = logits.gather(1, y[:, None]).squeeze(1)
        margin = true - logits.scatter(1, y[:, None], float("-inf")).amax(1)
        forget_margin = margin[:f]
        objective = ((margin0 - forget_margin) / span).clamp_(0.0, 1.0)
        # A sample already below the target margin counts as forgotten while it stays there.
        objective = torch.where(below0, (forget_margin <= self.target_margin).float(), objective)

        retain = logits[f:]
        utility = (true[f:] - retain.logsumexp(1)).exp_().mean()
        if self.kl_coef:
            log_p = retain - retain.logsumexp(1, keepdim=True)
            log_p0 = reference_logits[f:].log_softmax(1)
            kl = (log_p0.exp() * (log_p0 - log_p)).sum(1).mean()
            utility = utility - self.kl_coef * kl
        hits = (margin > 0).float()
        # One tensor -> list conversion instead of four.
        values = torch.stack([utility, objective.mean(), hits[:f].mean(), hits[f:].mean()]).tolist()
        return dict(zip(("utility", "objective", "forget_acc_reward", "retain_acc_reward"), values))

    def _reference_margins(self, reference_logits: torch.Tensor):
        """The original network's forget margins, which every step compares against:
        computed once per reference tensor (each world passes its own, every step)."""
        key = id(reference_logits)
        if key not in self._reference_margins_of:
            if len(self._reference_margins_of) >= 64:  # bounded: worlds may swap references
                self._reference_margins_of.pop(next(iter(self._reference_margins_of)))
            f, y = self.n_forget, self.reward_y
            margin0 = true_class_margin(reference_logits[:f], y[:f])
            below0 = margin0 <= self.target_margin
            # The tensor itself is kept too, so its id cannot be reused by another tensor.
            self._reference_margins_of[key] = (reference_logits, margin0,
                                               (margin0 - self.target_margin).clamp_min(1e-3), below0)
        return self._reference_margins_of[key][1:]

    def evaluation_sets(self, pools=("fit", "validation", "test")) -> dict[str, LabeledSet]:
        s = self.splits
        by_pool = {
            "fit": {"forget_train": s.forget_train, "retain_train": s.retain_train},
            "validation": {"forget_val": s.forget_val, "retain_val": s.retain_val},
            "test": {"forget": s.forget_test, "retain": s.retain_test},
        }
        return {name: ls for p in pools for name, ls in by_pool[p].items()}

    def metrics(self, predict: Predict, pools=("fit", "validation", "test")) -> dict[str, float]:
        """Accuracies as fractions: forget_acc/retain_acc (test), *_train_acc, *_val_acc."""
        out = {}
        for name, labeled in self.evaluation_sets(pools).items():
            pred = predict(name, labeled)
            out[f"{name}_acc"] = float((pred.cpu() == labeled.y).float().mean()) if len(labeled) else float("nan")
        return out

    @staticmethod
    def selection_score(metrics: dict[str, float]) -> float:
        """Scale-free score for choosing checkpoints on validation: retain minus forget."""
        return metrics["retain_val_acc"] - metrics["forget_val_acc"]

    # ------------------------------------------------------------------ reporting hooks
    report_rows = [
        ("forget_acc", "forget accuracy (test)"),
        ("retain_acc", "retain accuracy (test)"),
        ("forget_train_acc", "forget accuracy (train: forget set)"),
        ("retain_train_acc", "retain accuracy (train: retain set)"),
        ("forget_val_acc", "forget accuracy (validation)"),
        ("retain_val_acc", "retain accuracy (validation)"),
    ]
    report_note = "checkpoint chosen on the validation split; forget/retain accuracy are on held-out test images."
    curve_keys = [("forget_val_acc", "forget (val)"), ("retain_val_acc", "retain (val)")]

    @staticmethod
    def summary(metrics: dict) -> str:
        return f"forget {metrics['forget_acc']:.2%} retain {metrics['retain_acc']:.2%} (test)"

    @staticmethod
    def progress(row: dict) -> str:
        if "forget_val_acc" not in row:
            return ""
        return f" | val forget {row['forget_val_acc']:.2%} retain {row['retain_val_acc']:.2%}"

    @staticmethod
    def met_stop(row: dict, training) -> bool:
        """Stop once the deterministic policy meets the configured validation targets."""
        if training.stop_forget_acc is None or training.stop_retain_acc is None or "forget_val_acc" not in row:
            return False
        return row["forget_val_acc"] <= training.stop_forget_acc and row["retain_val_acc"] >= training.stop_retain_acc

    def report_sections(self, metrics: dict) -> list[str]:
        return []
