"""Timing helpers shared by the benchmarks: rates by wall and CPU clock, repeats interleaved,
and step drivers for worlds and WorldBatches that cost nothing beyond the step itself."""
from __future__ import annotations

import itertools
import statistics
import time

import numpy as np

CLOCKS = ("wall", "cpu")


class Phases:
    """Wall seconds of a run's phases, in the order they ended (metrics.json: phase_seconds)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self._since = time.perf_counter()

    def done(self, name: str) -> None:
        """The phase `name` ended now (a name met again adds up)."""
        now = time.perf_counter()
        self.seconds[name] = self.seconds.get(name, 0.0) + now - self._since
        self._since = now

    def total(self) -> float:
        """Seconds from the start to the end of the last phase."""
        return sum(self.seconds.values())


def rate(run, seconds: float) -> dict[str, float]:
    """Units per second of `run()` (which returns how many units it did), called until at
    least `seconds` of wall time have passed; by the wall clock and by this process's CPU
    time. On a shared machine the CPU clock leaves out the time other jobs held the cores,
    so it measures the cost of in-process work (it is meaningless for remote runners)."""
    done, wall0, cpu0 = 0, time.perf_counter(), time.process_time()
    while True:
        done += run()
        wall = time.perf_counter() - wall0
        if wall >= seconds:
            return {"wall": done / wall, "cpu": done / max(time.process_time() - cpu0, 1e-9)}


def interleaved(measures: dict, repeats: int, seconds: float) -> dict[str, dict[str, list[float]]]:
    """{clock: {measure: rate per repeat}}, the repeats taken in turn (a, b, c, a, b, c, ...)
    so that repeat i of every measure saw about the same machine load."""
    rates = {clock: {name: [] for name in measures} for clock in CLOCKS}
    for run in measures.values():  # warm-up: first calls allocate and fill caches
        run()
    for _ in range(repeats):
        for name, run in measures.items():
            for clock, value in rate(run, seconds).items():
                rates[clock][name].append(value)
    return rates


def median(values: list[float]) -> float:
    return statistics.median(values)


def paired_ratio(top: list[float], bottom: list[float]) -> float:
    """Median over repeats of top/bottom measured in the same repeat: steadier than a ratio
    of medians when the load changes between repeats."""
    return statistics.median(t / b for t, b in zip(top, bottom))


def forward_pass(world):
    # A step ends in host values (reward terms, observation), so it waits for the device;
    # the forward pass alone must wait too, or a GPU would time only the kernel launches.
    import torch

    sync = torch.cuda.synchronize if world.device.type == "cuda" else (lambda: None)

    def run():
        world.reward_logits()
        sync()
        return 1
    return run


def action_cycle(space, seed: int):
    """64 fixed random actions, repeated: drawing fresh ones would time the RNG too."""
    return itertools.cycle(np.random.default_rng(seed).uniform(-1, 1, (64,) + space.shape).astype(np.float32))


def world_steps(world, seed: int = 0):
    actions = action_cycle(world.action_space, seed)
    world.reset(seed=seed)

    def run():
        _, _, terminated, truncated, _ = world.step(next(actions))
        if terminated or truncated:
            world.reset()
        return 1
    return run


def batch_steps(batch, seed: int = 0):
    actions = action_cycle(batch.action_space, seed)
    batch.reset(seed=seed)
    resetting = np.zeros(batch.num_envs, bool)

    def run():
        nonlocal resetting
        # Steps of sub-envs that were resetting (next-step autoreset) are not env steps.
        stepped = int((~resetting).sum())
        _, _, terminated, truncated, _ = batch.step(next(actions))
        resetting = terminated | truncated
        return stepped
    return run
