"""ShiftWorld's factored step against the edited layer's full product, side by side.

How to run (after `make setup`; ~2 minutes on 2 cores, most of it building the world):

    .venv/bin/python scripts/factored_step.py

What to expect: one line with the median seconds per world step (reset + one step, as an ES
candidate costs) on MiniLM's last FFN output (bias task, rank 4, factor_basis 64, 128 texts
per cell), evaluated factored (the layer's cached original output plus the low-rank term,
worlds/shift.py) and with the layer's full matrix product, and the largest difference of
their logits (float rounding). Measured 2026-12-02 on an AMD EPYC 2-core machine, load 0.87 at
start, 1.39 at end, commit 04aa275: factored 0.080 s, full product 0.489 s, logits within 4.8e-07.
"""
from __future__ import annotations

import statistics
import time

import numpy as np
import torch

SETTINGS = {"task": "bias", "world": "shift", "edit": ["minilm.encoder.layer.5.output.dense"], "rank": 4,
            "factor_basis": 64, "episode_length": 1, "step_size": 1.0, "samples": {"per_set": 128},
            "bias": {"objective": "worst_group", "temperature": 0.05, "pairs_per_set": 0}, "torch_threads": 2}


def main() -> None:
    from rledit_ray.build import build_world
    from rledit_ray.config import build_config

    torch.set_num_threads(2)
    world = build_world(build_config(SETTINGS))
    action = np.random.default_rng(0).uniform(-0.3, 0.3, world.action_space.shape).astype(np.float32)
    factored = type(world).low_rank_edit

    def seconds_per_step(n: int = 10) -> float:
        world.reset(seed=0)
        world.step(action)  # warm-up: the first factored step caches the layer's original output
        start = time.perf_counter()
        for _ in range(n):
            world.reset(seed=0)
            world.step(action)
        return (time.perf_counter() - start) / n

    times, logits = {"factored": [], "full product": []}, {}
    for _ in range(3):
        for name in times:
            # The instance attribute shadows the method: None makes the world write and use its weights.
            world.low_rank_edit = (lambda: factored(world)) if name == "factored" else (lambda: None)
            times[name].append(seconds_per_step())
            logits[name] = world.reward_logits()
    diff = float((logits["factored"] - logits["full product"]).abs().max())
    print(f"factored {statistics.median(times['factored']):.3f} s/step, full product "
          f"{statistics.median(times['full product']):.3f} s/step, logits within {diff:.2g}")


if __name__ == "__main__":
    main()
