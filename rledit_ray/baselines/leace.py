"""LEACE (Belrose et al., 2023): erase the identity-group information from the embeddings
with the least-squares-optimal linear map, then retrain the head on what is left.

1. Fit the LEACE eraser (the `concept-erasure` package) on the train-side embeddings with the
   group membership as the concept: after it, the class-conditional means of every group
   coincide, so no linear classifier can read the group better than a constant one, while
   the embeddings move as little as possible (in the whitened least-squares sense).
2. The eraser is an affine map, stored as an `nn.Linear(d, d)` (`erase`) in front of the head,
   so the edited network still takes raw embeddings and every evaluation runs unchanged.
3. The head is *retrained* from a fresh initialisation (same architecture) on the erased
   train-side embeddings, unweighted, choosing the epoch on validation, rather than
   fine-tuned: the original head's first layer reads exactly the directions that were removed.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import nn

from rledit_ray.baselines.common import BaselineSettings, seeded
from rledit_ray.baselines.head_fit import TRAIN_POOLS, train_side, train_with_validation, validation_score
from rledit_ray.tasks.bias import BiasTask


@dataclass
class Hyper:
    epochs: int = 20  # the head's own recipe (targets/text_head.py HEAD_RECIPE)
    batch_size: int = 64
    lr: float = 1e-3
    pools: tuple[str, ...] = TRAIN_POOLS


def fit_eraser(x: torch.Tensor, concept: torch.Tensor) -> nn.Linear:
    """The LEACE eraser for `concept` (rows x k, e.g. one-hot or multi-hot group membership)
    as an affine layer: erase(x) = x - A (x - b) = (I - A) x + A b."""
    from concept_erasure import LeaceEraser

    eraser = LeaceEraser.fit(x.double(), concept.double())
    a = eraser.proj_left @ eraser.proj_right
    layer = nn.Linear(x.shape[1], x.shape[1])
    with torch.no_grad():
        layer.weight.copy_(torch.eye(x.shape[1], dtype=a.dtype) - a)
        layer.bias.copy_(a @ eraser.bias if eraser.bias is not None else torch.zeros(x.shape[1]))
    return layer.requires_grad_(False)


def debias(model: nn.Module, task: BiasTask, settings: BaselineSettings) -> nn.Module:
    hp = settings.hyper(Hyper)
    gen = seeded(settings.seed)
    validation_score(task, model)  # the unedited head sets the task's reference AUC, if unset
    rows = train_side(task, hp.pools)
    erase = fit_eraser(rows.x, rows.membership.float())
    with torch.no_grad():
        x = erase(rows.x)
    head = model
    for module in head.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    head, _ = train_with_validation(
        head, x, rows.y, torch.ones(len(rows.y)),
        lambda h: validation_score(task, nn.Sequential(OrderedDict(erase=erase, head=h))),
        hp.epochs, hp.batch_size, hp.lr, gen)
    return nn.Sequential(OrderedDict(erase=erase, head=head))
