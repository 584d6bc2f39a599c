"""Fine-tune on the retain set only (FT in SalUn): forgetting by catastrophic interference.

Cheap and safe for utility, but the forget class is only pushed down indirectly (its logit
never wins the softmax target on retain images), so it is usually forgotten incompletely.
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
    steps: int = 300
    batch_size: int = 128
    # A larger rate than the recipe's late-cosine rate: at 1e-3 the network barely moves.
    lr: float = 0.01
    momentum: float = 0.9


def unlearn(model: nn.Module, splits: UnlearningSplits, settings: BaselineSettings) -> nn.Module:
    hp = settings.hyper(Hyper)
    gen = seeded(settings.seed)
    opt = torch.optim.SGD(model.parameters(), lr=hp.lr, momentum=hp.momentum)
    retain = batches(splits.retain_train, hp.batch_size, gen)
    model.train()
    for _ in track(range(hp.steps), "finetune steps", unit="step"):
        x, y = next(retain)
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()
