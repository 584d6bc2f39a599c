"""What a world shows its agent: one observer per `WorldSettings.observation`, chosen once.

The world builds its observer (an `Observer`) once its first task is in place and hands
itself to every call; an observer keeps only what it derives from the world.

"weights" (WeightsObservation, here): the current edited weights divided by their original
scale (exact while they fit `obs_budget` values, else a fixed random sketch), the reward
terms, and t / T. "rowwise" (RowwiseObservation, worlds/rowwise.py): the request described
by data, per output row.
"""
from __future__ import annotations

import math

import numpy as np
import torch


def global_features(world) -> list[float]:
    """What every observation ends with: the observed reward terms and t / T."""
    return [world.terms[k] for k in world.observed_terms] + [world.t / world.settings.episode_length]


def n_globals(world) -> int:
    return len(world.observed_terms) + 1


class Observer:
    """`size`: the flat observation's length; `layout`: what the agent needs to unpack it
    (None: it reads the observation whole)."""

    size: int
    layout: dict | None = None

    def on_reset(self, world) -> None:
        """The episode's matrices are the original ones again."""

    def after_edit(self, world) -> None:
        """`world.matrices` were just written (the forward pass has not run yet)."""

    def observe(self, world) -> np.ndarray:
        raise NotImplementedError


class GaussianSketch:
    """L W R for fixed Gaussian L (a x rows) and R (cols x b): a Johnson-Lindenstrauss
    projection of a layer too big to observe exactly. Measured against sparser sketches
    (count sketch by index_add, block sums): a dense matmul was as fast or faster here, and
    it costs ~0.4 ms for a 128 x 1569 layer next to a ~7 ms forward pass."""

    def __init__(self, m: int, n: int, a: int, b: int, gen: torch.Generator, device):
        self.rows, self.cols = a, b
        # An axis that fits is kept exact (no identity matmul).
        self.left = None if a == m else (torch.randn(a, m, generator=gen) / math.sqrt(m)).to(device)
        self.right = (torch.randn(n, b, generator=gen) / math.sqrt(n)).to(device)

    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        w = w @ self.right
        return w if self.left is None else self.left @ w


class WeightsObservation(Observer):
    """The edited matrices (exact, or sketched) in W0-std units, then the global features."""

    def __init__(self, world):
        self.settings, self.scales = world.settings, world.scales
        self.sketches = self._make_sketches(world.layers, world.device)
        self.size = sum(self._observed_size(layer, sketch)
                        for layer, sketch in zip(world.layers, self.sketches)) + n_globals(world)
        self._original = self._weights(world.original)  # every episode starts from it
        self._current = self._original

    def on_reset(self, world) -> None:
        self._current = self._original

    def after_edit(self, world) -> None:
        # Observed now, while the new matrices are still in cache: after the forward pass
        # (which streams the reward samples through) they are not, and the same sketch cost
        # ~2x as much (measured on MNIST fc1, 128 x 1569, 2,048 samples).
        self._current = self._weights(world.matrices)

    def observe(self, world) -> np.ndarray:
        return np.concatenate([self._current, np.asarray(global_features(world), np.float32)])

    def _weights(self, matrices) -> np.ndarray:
        """The observed part of `matrices` (exact, or sketched), in W0-std units."""
        parts = []
        with torch.inference_mode():
            for w, scale, sketch in zip(matrices, self.scales, self.sketches):
                parts.append((w if sketch is None else sketch(w)).reshape(-1) / scale)
            return torch.cat(parts).cpu().numpy()

    @staticmethod
    def _observed_size(layer, sketch: GaussianSketch | None) -> int:
        return layer.rows * layer.cols if sketch is None else sketch.rows * sketch.cols

    def _make_sketches(self, layers, device) -> list[GaussianSketch | None]:
        """Fixed random projections (rows x cols -> a x b, a*b <= budget) for layers too big
        to observe exactly; seeded so every env of a run sees the same sketch."""
        gen = torch.Generator().manual_seed(self.settings.seed + 7919)
        budget, sketches = max(1, self.settings.obs_budget // len(layers)), []
        for layer in layers:
            m, n = layer.rows, layer.cols
            if m * n <= budget:
                sketches.append(None)
                continue
            # Keep every row (output unit) exact when that still leaves >= 16 sketched
            # columns: rows are what an edit treats differently, and it halves the cost
            # (one projection instead of two, over fewer columns).
            a = m if budget // m >= 16 else min(m, max(1, math.isqrt(budget)))
            b = max(1, budget // a)
            sketches.append(GaussianSketch(m, n, a, b, gen, device))
        return sketches
