"""What every baseline shares: its settings and a batch sampler."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Iterator

import torch
from torch import nn

from rledit_ray.data import LabeledSet
from rledit_ray.errors import UserError


@dataclass
class BaselineSettings:
    seed: int = 0
    dataset: str = "mnist"  # picks the unlearning retrain recipe (targets/train.py RECIPES)
    overrides: dict = field(default_factory=dict)  # hyper-parameter name -> value, e.g. {"lr": 1e-4}

    def hyper(self, cls):
        """The method's hyper-parameter dataclass with the overrides it knows applied."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(self.overrides) - known)
        if unknown:
            raise UserError(f"{cls.__module__.rsplit('.', 1)[-1]}: unknown hyper-parameter '{unknown[0]}': "
                            f"choose from {', '.join(sorted(known))}")
        return cls(**self.overrides)


def batches(data: LabeledSet, batch_size: int, gen: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless shuffled mini-batches (a new permutation each pass). Steps, not epochs,
    set each method's budget, so one setting costs the same on digits and on MNIST."""
    while True:
        order = torch.randperm(len(data), generator=gen)
        for i in range(0, len(data), batch_size):
            idx = order[i : i + batch_size]
            yield data.x[idx], data.y[idx]


def num_classes(model: nn.Module) -> int:
    return last_linear(model).out_features


def last_linear(model: nn.Module) -> nn.Linear:
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise UserError("the target has no nn.Linear layer: cannot find its classifier head")
    return linears[-1]


def seeded(seed: int) -> torch.Generator:
    torch.manual_seed(seed)  # dropout/initialisation, if a method uses them
    return torch.Generator().manual_seed(seed)
