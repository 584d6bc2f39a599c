"""Hand-designed editors, one file per method, dispatched by name.

Every method has the same signature, as in the OPTML unlearning repos (SalUn, l1-sparse):

    method(model, data, settings) -> nn.Module

It receives a copy of the trained target (the caller's model is never touched) and returns
the edited network in eval mode. Each method serves one task, which fixes what `data` is:
- unlearning (`unlearn`): `UnlearningSplits`; the method trains only on the fit pool
  (`splits.forget_train` / `splits.retain_train`; validation and test stay unseen);
- bias (`debias`): the `BiasTask`; the method trains only on its train-side pools (fit and
  reward), may choose a stopping point on validation, and never sees test.
Hyper-parameters live in a dataclass at the top of each method's file; `settings.overrides`
changes them by name.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Callable

from torch import nn

from rledit_ray.baselines import finetune, gradient_ascent, leace, neggrad_plus, random_labels, retrain, reweighted_finetune, ssd
from rledit_ray.baselines.common import BaselineSettings
from rledit_ray.errors import UserError


@dataclass(frozen=True)
class Baseline:
    task: str  # "unlearning" or "bias": the task whose data the method takes
    method: Callable[..., nn.Module]


BASELINES = {
    "retrain": Baseline("unlearning", retrain.unlearn),
    "finetune": Baseline("unlearning", finetune.unlearn),
    "gradient_ascent": Baseline("unlearning", gradient_ascent.unlearn),
    "neggrad_plus": Baseline("unlearning", neggrad_plus.unlearn),
    "random_labels": Baseline("unlearning", random_labels.unlearn),
    "ssd": Baseline("unlearning", ssd.unlearn),
    "reweighted_finetune": Baseline("bias", reweighted_finetune.debias),
    "leace": Baseline("bias", leace.debias),
}


def baselines_for(task: str) -> list[str]:
    """Names of the baselines serving `task`, in registry order."""
    return [name for name, b in BASELINES.items() if b.task == task]


def get_baseline(name: str, task: str | None = None) -> Baseline:
    """The registry entry; with `task`, refuses a method that serves another task."""
    choices = baselines_for(task) if task else list(BASELINES)
    if name not in choices:
        kind = f"{task} baseline" if task else "baseline"
        raise UserError(f"unknown {kind} '{name}': choose one of {', '.join(choices)}")
    return BASELINES[name]


def run_baseline(name: str, model: nn.Module, data, settings: BaselineSettings | None = None,
                 task: str | None = None) -> tuple[nn.Module, float]:
    """(edited copy of `model`, wall seconds of the method itself)."""
    method = get_baseline(name, task).method
    settings = settings or BaselineSettings()
    model = copy.deepcopy(model).requires_grad_(True)
    started = time.perf_counter()
    edited = method(model, data, settings)
    seconds = time.perf_counter() - started
    return edited.eval().requires_grad_(False), seconds


__all__ = ["BASELINES", "Baseline", "BaselineSettings", "baselines_for", "get_baseline", "run_baseline"]
