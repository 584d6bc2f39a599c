"""Random labels (RL in SalUn, Golatkar et al.): train the forget images towards a random
wrong class, alongside ordinary retain batches so the other classes stay put.

Unlike gradient ascent, the target is a finite loss: it settles instead of diverging.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from rledit_ray.baselines.common import BaselineSettings, batches, num_classes, seeded
from rledit_ray.data import UnlearningSplits
from rledit_ray.progress import track


@dataclass
class Hyper:
    steps: int = 150
    batch_size: int = 128
    lr: float = 1e-3


def unlearn(model: nn.Module, splits: UnlearningSplits, settings: BaselineSettings) -> nn.Module:
    hp = settings.hyper(Hyper)
    gen = seeded(settings.seed)
    k = num_classes(model)
    opt = torch.optim.Adam(model.parameters(), lr=hp.lr)
    forget = batches(splits.forget_train, hp.batch_size, gen)
    retain = batches(splits.retain_train, hp.batch_size, gen)
    model.train()
    for _ in track(range(hp.steps), "random_labels steps", unit="step"):
        (xf, yf), (xr, yr) = next(forget), next(retain)
        # A uniformly drawn *other* class: shifting by 1..k-1 never lands on the true label.
        wrong = (yf + torch.randint(1, k, yf.shape, generator=gen)) % k
        x, y = torch.cat([xf, xr]), torch.cat([wrong, yr])
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()
