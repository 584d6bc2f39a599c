"""Group-balanced fine-tune of the classifier head (reweighting, as in Kamiran & Calders 2012
and the "upweighting" baselines of the group-robustness literature).

Every (identity group x label) cell of the train-side rows gets the same total weight, so
the rare cells (harmful comments about a small group, benign mentions of a group the head
over-flags) count as much as the common ones. The original head is fine-tuned with that
weighted cross-entropy; the epoch is chosen on validation (epoch 0, the unedited head, is a
candidate too).
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from rledit_ray.baselines.common import BaselineSettings, seeded
from rledit_ray.baselines.head_fit import TRAIN_POOLS, balanced_weights, train_side, train_with_validation, validation_score
from rledit_ray.tasks.bias import BiasTask


@dataclass
class Hyper:
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    pools: tuple[str, ...] = TRAIN_POOLS


def debias(model: nn.Module, task: BiasTask, settings: BaselineSettings) -> nn.Module:
    hp = settings.hyper(Hyper)
    gen = seeded(settings.seed)
    rows = train_side(task, hp.pools)
    model, _ = train_with_validation(model, rows.x, rows.y, balanced_weights(rows),
                                     lambda m: validation_score(task, m), hp.epochs, hp.batch_size, hp.lr, gen)
    return model
