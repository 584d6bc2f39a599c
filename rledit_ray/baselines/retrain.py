"""Retrain from scratch on the retain set: the gold standard every other method is judged by.

Same architecture (the target's modules re-initialised) and the same recipe the target was
trained with (targets/train.py), minus the forget set. The slowest method by far.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from rledit_ray.baselines.common import BaselineSettings
from rledit_ray.data import UnlearningSplits
from rledit_ray.targets.train import RECIPES, Recipe, train_classifier


@dataclass
class Hyper:
    epochs: int | None = None  # None: the target's own recipe for this dataset


def unlearn(model: nn.Module, splits: UnlearningSplits, settings: BaselineSettings) -> nn.Module:
    hp = settings.hyper(Hyper)
    recipe = RECIPES.get(settings.dataset, Recipe(epochs=5))
    recipe = Recipe(**{**asdict(recipe), "seed": settings.seed, **({"epochs": hp.epochs} if hp.epochs else {})})
    torch.manual_seed(settings.seed)
    for module in model.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    return train_classifier(model, splits.retain_train.x, splits.retain_train.y, recipe)
