"""Unlearning requests ("forget class k") as data: one task per request, built on demand.

A generalist editor is trained over a distribution of requests and served new ones. Each
request k gets its own `UnlearningTask` (reward samples: images of class k and of the other
classes from the fit pool; evaluation sets: validation and test halves), made the first time
it is asked for and kept. To keep memory flat over ten MNIST requests, a request keeps only
its reward rows of the fit pool (not ~55k images per request): its "fit" accuracies are
measured on those rows; validation and test are the full pools.
"""
from __future__ import annotations

import copy

import numpy as np
import torch

from rledit_ray import defaults as D
from rledit_ray.data import ImageDataset, LabeledSet, UnlearningSplits, pools
from rledit_ray.errors import UserError
from rledit_ray.tasks.unlearning import UnlearningTask


class UnlearningRequests:
    """Tasks for single-class requests over one dataset; `train_classes` are the requests
    episodes sample from, any other class of the label set can still be asked for."""

    def __init__(self, ds: ImageDataset, train_classes, samples_per_set: int = D.SAMPLES_PER_SET, seed: int = 0,
                 target_margin: float = D.TARGET_MARGIN, kl_coef: float = D.KL_COEF):
        self.ds, self.name = ds, ds.name
        self.num_classes = ds.num_classes
        self.train_classes = tuple(int(c) for c in train_classes)
        if not self.train_classes:
            raise UserError("generalist.train_classes is empty: name at least one class to train on")
        for c in self.train_classes:
            self.check(c)
        self._task_args = {"samples_per_set": samples_per_set, "seed": seed,
                           "target_margin": target_margin, "kl_coef": kl_coef}
        self._tasks: dict[int, UnlearningTask] = {}
        self._device = None
        self._pools = None

    def check(self, k: int) -> int:
        if not 0 <= int(k) < self.num_classes:
            raise UserError(f"forget class {k} is outside the label set of '{self.name}' "
                            f"(0..{self.num_classes - 1})")
        return int(k)

    def task(self, k: int) -> UnlearningTask:
        k = self.check(k)
        if k not in self._tasks:
            task = UnlearningTask(self._splits(k), **self._task_args)
            task.request = k
            self._tasks[k] = task.to(self._device) if self._device is not None else task
        return self._tasks[k]

    def drop(self, k: int) -> None:
        self._tasks.pop(int(k), None)

    def _splits(self, k: int) -> UnlearningSplits:
        """Request k's splits, its fit halves cut to the reward rows before any copy (indexing
        MNIST's whole fit pool per request would cost ~0.3 s and ~170 MB each)."""
        if self._pools is None:
            self._pools = pools(self.ds)
        p, n = self._pools, self._task_args["samples_per_set"]
        # A fresh generator per request: its rows do not depend on which request came first,
        # nor on the class's label (relabelled data picks the same images).
        gen = torch.Generator().manual_seed(self._task_args["seed"])

        def rows(s: LabeledSet, keep: torch.Tensor) -> LabeledSet:
            idx = keep.nonzero().squeeze(1)
            return s.take(idx[torch.randperm(len(idx), generator=gen)[:n]])

        def halves(s: LabeledSet) -> tuple[LabeledSet, LabeledSet]:
            return s.where(s.y == k), s.where(s.y != k)

        return UnlearningSplits((k,), rows(p.fit, p.fit.y == k), rows(p.fit, p.fit.y != k),
                                *halves(p.validation), *halves(p.test))

    def for_rollouts(self) -> "UnlearningRequests":
        """The training requests' tasks, built now and without their evaluation pools, and no
        dataset: what an EnvRunner needs (episodes only ever sample training requests)."""
        rollout = copy.copy(self)
        rollout._tasks = {k: self.task(k).for_rollouts() for k in self.train_classes}
        rollout.ds, rollout._pools = None, None
        return rollout

    def sample(self, rng: np.random.Generator) -> int:
        """A training request, uniformly (the world passes its seeded np_random)."""
        return int(self.train_classes[int(rng.integers(len(self.train_classes)))])

    def to(self, device) -> "UnlearningRequests":
        self._device = device
        for task in self._tasks.values():
            task.to(device)
        return self
