"""Hand-designed unlearning editors, one file per method, dispatched by name.

Every method has the same signature, as in the OPTML unlearning repos (SalUn, l1-sparse):

    unlearn(model, splits, settings) -> nn.Module

It receives a copy of the trained target (the caller's model is never touched), trains only
on the fit pool (`splits.forget_train` / `splits.retain_train`; validation and test stay
unseen) and returns the edited network in eval mode. Hyper-parameters live in a dataclass at
the top of each method's file; `settings.overrides` changes them by name.
"""
from __future__ import annotations

import copy
import time

from torch import nn

from rledit_ray.baselines import finetune, gradient_ascent, neggrad_plus, random_labels, retrain, ssd
from rledit_ray.baselines.common import BaselineSettings
from rledit_ray.data import UnlearningSplits
from rledit_ray.errors import UserError

BASELINES = {
    "retrain": retrain.unlearn,
    "finetune": finetune.unlearn,
    "gradient_ascent": gradient_ascent.unlearn,
    "neggrad_plus": neggrad_plus.unlearn,
    "random_labels": random_labels.unlearn,
    "ssd": ssd.unlearn,
}


def get_baseline(name: str):
    if name not in BASELINES:
        raise UserError(f"unknown unlearning baseline '{name}': choose one of {', '.join(BASELINES)}")
    return BASELINES[name]


def run_baseline(name: str, model: nn.Module, splits: UnlearningSplits,
                 settings: BaselineSettings | None = None) -> tuple[nn.Module, float]:
    """(edited copy of `model`, wall seconds of the method itself)."""
    method = get_baseline(name)
    settings = settings or BaselineSettings()
    model = copy.deepcopy(model).requires_grad_(True)
    started = time.perf_counter()
    edited = method(model, splits, settings)
    seconds = time.perf_counter() - started
    return edited.eval().requires_grad_(False), seconds


__all__ = ["BASELINES", "BaselineSettings", "get_baseline", "run_baseline"]
