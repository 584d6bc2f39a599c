"""Selective Synaptic Dampening (Foster et al., 2024): no training at all.

1. Diagonal Fisher importance of every weight on the forget set, I_f, and on the whole
   training set, I_d (mean squared gradient of the loss over mini-batches, as in ssd.py).
2. Weights far more important to the forget set than to the data as a whole,
   I_f > alpha * I_d, are over-specialised to it: scale them by
   beta = min(lambda * I_d / I_f, 1), i.e. dampen them in proportion to how specialised they are.

It is the hand-made cousin of MaskWorld: a multiplicative mask on W0, chosen by a rule
instead of a learned policy.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from rledit_ray.baselines.common import BaselineSettings, batches, seeded
from rledit_ray.data import LabeledSet, UnlearningSplits


@dataclass
class Hyper:
    alpha: float = 10.0  # selection: how much more forget-important a weight must be (paper: 10)
    lam: float = 1.0  # dampening constant (paper: 1)
    batch_size: int = 32
    # Mini-batches for each importance estimate: the full-data one is sampled, not exhaustive.
    batches_forget: int = 64
    batches_full: int = 256


def importances(model: nn.Module, data: LabeledSet, n_batches: int, batch_size: int,
                gen: torch.Generator) -> dict[str, torch.Tensor]:
    imp = {name: torch.zeros_like(p) for name, p in model.named_parameters()}
    stream = batches(data, batch_size, gen)
    for _ in range(n_batches):
        x, y = next(stream)
        model.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        for name, p in model.named_parameters():
            imp[name] += p.grad.detach() ** 2
    return {name: v / n_batches for name, v in imp.items()}


def unlearn(model: nn.Module, splits: UnlearningSplits, settings: BaselineSettings) -> nn.Module:
    hp = settings.hyper(Hyper)
    gen = seeded(settings.seed)
    full = LabeledSet(torch.cat([splits.forget_train.x, splits.retain_train.x]),
                      torch.cat([splits.forget_train.y, splits.retain_train.y]))
    model.eval()  # importances of the deployed network (no dropout/batch-norm updates)
    imp_forget = importances(model, splits.forget_train, hp.batches_forget, hp.batch_size, gen)
    imp_full = importances(model, full, hp.batches_full, hp.batch_size, gen)
    with torch.no_grad():
        for name, p in model.named_parameters():
            f, d = imp_forget[name], imp_full[name]
            selected = f > hp.alpha * d
            beta = (hp.lam * d / f.clamp_min(1e-20)).clamp(max=1.0)
            p.mul_(torch.where(selected, beta, torch.ones_like(beta)))
    model.zero_grad(set_to_none=True)
    return model
