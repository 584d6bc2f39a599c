"""What the bias baselines share: the train-side rows, group x label cells, and a head
trainer whose stopping point is chosen on the validation split (never on test).

Train side = the pools the RL reward may draw from (`fit`, the head's own training rows,
and `reward`); validation only picks the epoch, with the same score RL checkpoints are
chosen by (`BiasTask.selection_score`), so every bias method is selected alike.
"""
from __future__ import annotations

import copy
from typing import Callable

import torch
from torch import nn

from rledit_ray.errors import UserError
from rledit_ray.progress import track
from rledit_ray.targets import full_model_scores
from rledit_ray.tasks.bias import BiasTask, GroupedSet

TRAIN_POOLS = ("fit", "reward")


def train_side(task: BiasTask, pools=TRAIN_POOLS) -> GroupedSet:
    bad = sorted(set(pools) - set(TRAIN_POOLS))
    if bad:
        raise UserError(f"bias baselines train on {' and '.join(TRAIN_POOLS)} only (got pool '{bad[0]}')")
    sets = [getattr(task.data, p) for p in pools]
    return GroupedSet(torch.cat([s.x for s in sets]), torch.cat([s.y for s in sets]),
                      torch.cat([s.membership for s in sets]))


def cells(rows: GroupedSet) -> torch.Tensor:
    """Cell id per row: (first identity group mentioned, or none) x label."""
    first = torch.where(rows.membership.any(1), rows.membership.float().argmax(1), rows.membership.shape[1])
    return first * 2 + rows.y


def balanced_weights(rows: GroupedSet) -> torch.Tensor:
    """Per-row weights giving every (group, label) cell the same total weight, mean 1."""
    cell = cells(rows)
    counts = torch.bincount(cell).float()
    w = 1.0 / counts[cell]
    return w / w.mean()


def validation_score(task: BiasTask, model: nn.Module) -> float:
    """The score RL checkpoints are chosen by, on validation. The first network a task
    measures sets its reference AUC: callers measure the unedited head first."""
    return task.selection_score(task.metrics(full_model_scores(model.eval()), pools=("validation",)))


def train_with_validation(head: nn.Module, x: torch.Tensor, y: torch.Tensor, weights: torch.Tensor,
                          score: Callable[[nn.Module], float], epochs: int, batch_size: int, lr: float,
                          gen: torch.Generator) -> tuple[nn.Module, dict]:
    """Adam on the weighted cross-entropy; after each epoch `score(head)` (higher is better).
    Returns the head at its best epoch (0 = as given) and {"best_epoch", "best_score"}."""
    best_score, best_epoch, best_state = score(head), 0, copy.deepcopy(head.state_dict())
    opt = torch.optim.Adam(head.parameters(), lr=lr)
    for epoch in track(range(1, epochs + 1), "head epochs", unit="epoch"):
        head.train()
        order = torch.randperm(len(y), generator=gen)
        for i in range(0, len(y), batch_size):
            idx = order[i : i + batch_size]
            loss = (nn.functional.cross_entropy(head(x[idx]), y[idx], reduction="none") * weights[idx]).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        current = score(head)
        if current > best_score:
            best_score, best_epoch, best_state = current, epoch, copy.deepcopy(head.state_dict())
    head.load_state_dict(best_state)
    return head.eval(), {"best_epoch": best_epoch, "best_score": best_score}
