"""Build a world from a `RunConfig`: the path RLlib EnvRunners and the CLI take.

Everything heavy (dataset, trained target, prefix activations) is memoised per process, so
the sub-envs of one EnvRunner share one dataset, one copy of the frozen prefix's cache and
one set of reward samples; each env only owns its edited parameters.
"""
from __future__ import annotations

import copy
import json

import torch

from rledit_ray.config import RunConfig, build_config
from rledit_ray.data import load_dataset, unlearning_splits
from rledit_ray.targets import load_target
from rledit_ray.tasks import UnlearningTask
from rledit_ray.worlds.base import EditWorld, WorldSettings
from rledit_ray.worlds.mask import MaskWorld
from rledit_ray.worlds.shift import ShiftWorld

WORLD_CLASSES = {"mask": MaskWorld, "shift": ShiftWorld}
_PROCESS_CACHE: dict[str, dict] = {}
AGENT_ONLY_KEYS = ("factor_layout",)


def world_settings(cfg: RunConfig) -> WorldSettings:
    return WorldSettings(
        rank=cfg.rank,
        step_size=cfg.effective_step_size,
        mask_bounds=tuple(cfg.mask_bounds),
        episode_length=cfg.episode_length,
        utility_coef=cfg.reward.utility_coef,
        objective_coef=cfg.reward.objective_coef,
        reward_mode=cfg.reward.mode,
        obs_budget=cfg.obs_budget,
        seed=cfg.seed,
        device=cfg.device,
    )


def _shared(cfg: RunConfig) -> dict:
    """Dataset, target, task and prefix cache for this config, built once per process."""
    key = json.dumps(cfg.model_dump(include={
        "task", "dataset", "data_root", "data_source", "forget_classes", "target_seed",
        "edit", "samples", "seed", "device", "reward",
    }), sort_keys=True)
    if key not in _PROCESS_CACHE:
        ds = load_dataset(cfg.dataset, root=cfg.data_root, source=cfg.data_source)
        model, meta = load_target(ds, seed=cfg.target_seed)
        splits = unlearning_splits(ds, cfg.forget_classes)
        task = UnlearningTask(splits, samples_per_set=cfg.samples.per_set, seed=cfg.seed,
                              target_margin=cfg.reward.target_margin, kl_coef=cfg.reward.kl_coef)
        _PROCESS_CACHE[key] = {"model": model, "meta": meta, "task": task, "prefix_cache": {}}
    return _PROCESS_CACHE[key]


def build_world(config: RunConfig | dict) -> EditWorld:
    if not isinstance(config, RunConfig):
        # RLlib hands the env_config back with the agent's extra keys; the world ignores them.
        config = build_config({k: v for k, v in dict(config).items() if k not in AGENT_ONLY_KEYS},
                              where="env_config")
    cfg = config
    torch.set_num_threads(cfg.torch_threads)
    shared = _shared(cfg.check())
    world = WORLD_CLASSES[cfg.world](
        copy.deepcopy(shared["model"]), cfg.edit, shared["task"], world_settings(cfg),
        prefix_cache=shared["prefix_cache"],
    )
    world.target_metadata = shared["meta"]
    return world


def make_mask_world(**config) -> EditWorld:
    return build_world({**config, "world": "mask"})


def make_shift_world(**config) -> EditWorld:
    return build_world({**config, "world": "shift"})
