"""Run one episode of a world under any policy (a function obs -> action)."""
from __future__ import annotations

from typing import Callable

import numpy as np

from rledit_ray.worlds.base import EditWorld

Policy = Callable[[np.ndarray], np.ndarray]


def run_episode(world: EditWorld, policy: Policy, seed: int | None = None) -> dict:
    """Apply `policy` for one episode; the world keeps the final edit. Returns the final
    reward terms and the episode return."""
    obs, info = world.reset(seed=seed)
    total, done = 0.0, False
    while not done:
        obs, reward, terminated, truncated, info = world.step(policy(obs))
        total += reward
        done = terminated or truncated
    return {**info, "return": total}


def random_policy(world: EditWorld, seed: int = 0) -> Policy:
    rng = np.random.default_rng(seed)
    low, high = world.action_space.low, world.action_space.high
    return lambda obs: rng.uniform(low, high).astype(np.float32)
