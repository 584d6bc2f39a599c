"""Deterministic splits for editing tasks.

Three disjoint pools, so that no number we report was used to choose or reward an edit:
- fit: the images the target network is trained on; the paper's forget and retain sets
  (and the reward samples) are drawn from here;
- validation: held out from training; used only to choose the best checkpoint;
- test: the dataset's own test split; used only for reporting.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from rledit_ray.data.images import ImageDataset
from rledit_ray.errors import UserError

# Fixed, independent of the run seed: the target network and every run must agree on it.
VALIDATION_FRACTION = 1 / 12
VALIDATION_SEED = 1234


@dataclass
class LabeledSet:
    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)

    def take(self, index: torch.Tensor) -> "LabeledSet":
        return LabeledSet(self.x[index], self.y[index])

    def where(self, mask: torch.Tensor) -> "LabeledSet":
        return LabeledSet(self.x[mask], self.y[mask])

    def sample(self, n: int, generator: torch.Generator) -> "LabeledSet":
        """n rows drawn without replacement (all rows if n >= len)."""
        if n >= len(self):
            return self
        return self.take(torch.randperm(len(self), generator=generator)[:n])


@dataclass
class Pools:
    fit: LabeledSet
    validation: LabeledSet
    test: LabeledSet


def pools(ds: ImageDataset) -> Pools:
    perm = torch.randperm(len(ds.y_train), generator=torch.Generator().manual_seed(VALIDATION_SEED))
    n_val = int(round(len(perm) * VALIDATION_FRACTION))
    train = LabeledSet(ds.x_train, ds.y_train)
    return Pools(
        fit=train.take(perm[n_val:]),
        validation=train.take(perm[:n_val]),
        test=LabeledSet(ds.x_test, ds.y_test),
    )


@dataclass
class UnlearningSplits:
    """Forget/retain halves of each pool for a set of classes to forget."""

    forget_classes: tuple[int, ...]
    forget_train: LabeledSet
    retain_train: LabeledSet
    forget_val: LabeledSet
    retain_val: LabeledSet
    forget_test: LabeledSet
    retain_test: LabeledSet


def unlearning_splits(ds: ImageDataset, forget_classes) -> UnlearningSplits:
    forget_classes = tuple(sorted({int(c) for c in forget_classes}))
    if not forget_classes:
        raise UserError("forget classes are empty: name at least one class to forget")
    bad = [c for c in forget_classes if not 0 <= c < ds.num_classes]
    if bad:
        raise UserError(
            f"forget class {bad[0]} is outside the label set of '{ds.name}' "
            f"(0..{ds.num_classes - 1})"
        )
    if len(forget_classes) == ds.num_classes:
        raise UserError("cannot forget every class: leave at least one class to retain")
    p = pools(ds)
    forget_ids = torch.tensor(forget_classes)

    def halves(s: LabeledSet):
        is_forget = torch.isin(s.y, forget_ids)
        return s.where(is_forget), s.where(~is_forget)

    ft, rt = halves(p.fit)
    fv, rv = halves(p.validation)
    fe, re = halves(p.test)
    return UnlearningSplits(forget_classes, ft, rt, fv, rv, fe, re)
