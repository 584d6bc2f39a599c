"""NegGrad+ (Kurmanji et al., 2023): descend on retain and ascend on forget at once.

loss = alpha * CE(retain) - (1 - alpha) * min(CE(forget), cap). The cap is ours: the ascent
term is unbounded, and once a forget image is confidently wrong there is nothing left to
gain, only weights to blow up; capping it lets the retain term take over.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from rledit_ray.baselines.common import BaselineSettings, batches, seeded
from rledit_ray.data import UnlearningSplits
from rledit_ray.progress import track


@dataclass
class Hyper:
    steps: int = 150
    batch_size: int = 128
    lr: float = 1e-3
    alpha: float = 0.5
    cap: float = 5.0  # nats; ~ p(true) < 0.7% on a forget image


def unlearn(model: nn.Module, splits: UnlearningSplits, settings: BaselineSettings) -> nn.Module:
    hp = settings.hyper(Hyper)
    gen = seeded(settings.seed)
    opt = torch.optim.Adam(model.parameters(), lr=hp.lr)
    forget = batches(splits.forget_train, hp.batch_size, gen)
    retain = batches(splits.retain_train, hp.batch_size, gen)
    model.train()
    for _ in track(range(hp.steps), "neggrad_plus steps", unit="step"):
        (xf, yf), (xr, yr) = next(forget), next(retain)
        ascent = nn.functional.cross_entropy(model(xf), yf).clamp(max=hp.cap)
        loss = hp.alpha * nn.functional.cross_entropy(model(xr), yr) - (1 - hp.alpha) * ascent
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()
