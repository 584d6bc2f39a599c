"""Build a world from a `RunConfig`: the path RLlib EnvRunners and the CLI take.

Everything heavy (dataset, trained target, prefix activations) is memoised per process, so
the sub-envs of one EnvRunner share one dataset, one copy of the frozen prefix's cache and
one set of reward samples; each env only owns its edited parameters.
"""
from __future__ import annotations

import copy
import json

import numpy as np
import torch

from rledit_ray.config import RunConfig, build_config
from rledit_ray.data import load_dataset, unlearning_splits
from rledit_ray.data.text import load_text_dataset, text_splits
from rledit_ray.targets import load_target
from rledit_ray.targets.encoder import dataset_embeddings
from rledit_ray.targets.text_head import load_text_head
from rledit_ray.tasks import UnlearningTask
from rledit_ray.tasks.bias import BiasTask, bias_data
from rledit_ray.tasks.requests import UnlearningRequests
from rledit_ray.worlds.base import EditWorld, WorldSettings
from rledit_ray.worlds.batched import WorldBatch
from rledit_ray.worlds.mask import MaskWorld
from rledit_ray.worlds.shift import ShiftWorld

WORLD_CLASSES = {"mask": MaskWorld, "shift": ShiftWorld}
_PROCESS_CACHE: dict[str, dict] = {}
AGENT_ONLY_KEYS = ("factor_layout", "obs_layout")


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
        observation="rowwise" if cfg.generalist is not None else "weights",
        seed=cfg.seed,
        device=cfg.device,
    )


def _shared(cfg: RunConfig) -> dict:
    """Dataset, target, task and prefix cache for this config, built once per process."""
    key = json.dumps(cfg.model_dump(include={
        "task", "dataset", "data_root", "data_source", "forget_classes", "target_seed",
        "edit", "samples", "seed", "device", "reward", "bias", "generalist",
    }), sort_keys=True)
    if key in _PROCESS_CACHE:
        return _PROCESS_CACHE[key]
    if cfg.task == "bias":
        model, meta, task = _bias_parts(cfg)
    else:
        ds = load_dataset(cfg.dataset, root=cfg.data_root, source=cfg.data_source)
        model, meta = load_target(ds, seed=cfg.target_seed)
        task_args = {"samples_per_set": cfg.samples.per_set, "seed": cfg.seed,
                     "target_margin": cfg.reward.target_margin, "kl_coef": cfg.reward.kl_coef}
        if cfg.generalist is not None:
            requests = UnlearningRequests(ds, cfg.generalist.train_classes, **task_args)
            for k in cfg.generalist.heldout_classes:
                requests.check(k)
            _PROCESS_CACHE[key] = {"model": model, "meta": meta, "task": None, "requests": requests,
                                   "prefix_cache": {}}
            return _PROCESS_CACHE[key]
        task = UnlearningTask(unlearning_splits(ds, cfg.forget_classes), **task_args)
    _PROCESS_CACHE[key] = {"model": model, "meta": meta, "task": task, "prefix_cache": {}}
    return _PROCESS_CACHE[key]


def _bias_parts(cfg: RunConfig):
    """Text dataset -> cached embeddings -> cached head -> BiasTask."""
    ds = load_text_dataset(cfg.dataset, cfg.data_root)
    splits = text_splits(ds)
    emb = dataset_embeddings(ds)
    x_fit = torch.from_numpy(emb["texts"][splits.fit])
    y_fit = torch.from_numpy(ds.labels[splits.fit])
    model, meta = load_text_head(ds.name, x_fit, y_fit, seed=cfg.target_seed,
                                 extra_meta={"data_source": ds.source, "encoder": "all-MiniLM-L6-v2 (mean)"})
    data = bias_data(ds.labels, ds.membership, ds.groups, splits, emb["texts"], emb["pair_original"],
                     emb["pair_swapped"], np.asarray([g for _, _, g in ds.pairs], np.int64))
    task = BiasTask(data, samples_per_set=cfg.samples.per_set, seed=cfg.seed,
                    objective=cfg.bias.objective, temperature=cfg.bias.temperature,
                    reward_pools=tuple(cfg.bias.reward_pools), calibration_coef=cfg.bias.calibration_coef)
    return model, meta, task


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
        prefix_cache=shared["prefix_cache"], requests=shared.get("requests"),
    )
    world.target_metadata = shared["meta"]
    return world


def build_env(env_config: dict) -> EditWorld | WorldBatch:
    """RLlib's env creator. RLlib asks for all sub-envs of an EnvRunner at once (adding
    `num_envs` to the env_config) when the agent's `vectorize` is "batched"; they become
    one WorldBatch. Without `num_envs` this is `build_world`."""
    env_config = dict(env_config)
    num_envs = env_config.pop("num_envs", None)
    if num_envs is None:
        return build_world(env_config)
    cfg = build_config({k: v for k, v in env_config.items() if k not in AGENT_ONLY_KEYS}, where="env_config")
    return WorldBatch(lambda: build_world(cfg), int(num_envs))


def make_mask_world(**config) -> EditWorld:
    return build_world({**config, "world": "mask"})


def make_shift_world(**config) -> EditWorld:
    return build_world({**config, "world": "shift"})
