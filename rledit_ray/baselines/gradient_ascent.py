"""Gradient ascent on the forget set (GA): maximise its loss, ignore everything else.

Nothing holds the other classes in place, so GA must stop early: we stop once the forget
batches are (on a running average) no longer classified correctly, else it wrecks the net.
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
    max_steps: int = 200
    batch_size: int = 128
    lr: float = 1e-4
    # Stop when the running forget-batch accuracy falls to this (0 = the class is gone).
    stop_forget_acc: float = 0.01


def unlearn(model: nn.Module, splits: UnlearningSplits, settings: BaselineSettings) -> nn.Module:
    hp = settings.hyper(Hyper)
    gen = seeded(settings.seed)
    opt = torch.optim.Adam(model.parameters(), lr=hp.lr)
    forget = batches(splits.forget_train, hp.batch_size, gen)
    running = 1.0
    model.train()
    for _ in track(range(hp.max_steps), "gradient_ascent steps (at most)", unit="step"):
        x, y = next(forget)
        logits = model(x)
        running = 0.7 * running + 0.3 * float((logits.argmax(1) == y).float().mean())
        if running <= hp.stop_forget_acc:
            break
        loss = -nn.functional.cross_entropy(logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()
