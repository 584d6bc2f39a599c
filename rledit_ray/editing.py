"""Use a trained policy or saved weights without training: `rledit edit` and `rledit eval`."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from rledit_ray.config import RunConfig, load_config
from rledit_ray.errors import UserError
from rledit_ray.report import write_json
from rledit_ray.targets import full_model_predict, full_model_scores, save_weights
from rledit_ray.worlds import build_world
from rledit_ray.worlds.rollout import run_episode

CONFIG_NAME = "rledit_config.yaml"


def find_checkpoint(path: str | Path) -> tuple[Path, Path]:
    """(checkpoint dir, config file) from a run directory or a checkpoint directory."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"checkpoint '{path}' does not exist")
    path = path.resolve()  # RLlib reads checkpoints through pyarrow, which wants absolute paths
    # "checkpoint.old" is the previous best, left alone only when a save was killed between
    # its two renames (training._save_checkpoint_atomically): still a complete checkpoint.
    ckpt = next((path / name for name in ("checkpoint", "checkpoint.old") if (path / name).is_dir()), path)
    config = ckpt / CONFIG_NAME
    if not config.is_file():
        raise UserError(f"'{path}' is neither a run directory nor an rledit checkpoint (no {CONFIG_NAME})")
    return ckpt, config


def apply_checkpoint(checkpoint: str | Path, out: str | Path) -> dict:
    """Apply the trained policy deterministically to the target; save weights + metrics."""
    from rledit_ray.agent import deterministic_action, load_module

    ckpt, config_path = find_checkpoint(checkpoint)
    cfg = load_config(config_path)
    world = build_world(cfg)
    module = load_module(str(ckpt))
    run_episode(world, lambda obs: np.zeros(world.action_space.shape, np.float32))
    before = world.task_metrics(pools=("test",))
    started = time.perf_counter()
    terms = run_episode(world, lambda obs: deterministic_action(module, obs))
    seconds = time.perf_counter() - started
    after = world.task_metrics()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_weights(world.model, out / "edited_weights.safetensors",
                 {"checkpoint": str(Path(ckpt).resolve()), "world": cfg.world, "edit": cfg.edit})
    result = {"task": cfg.task, "world": cfg.world, "seed": cfg.seed, "before": before, "after": after,
              "final_reward_terms": terms, "edit_seconds": seconds, "summary": world.task.summary(after)}
    write_json(out / "metrics.json", result)
    return result


def evaluate_weights(cfg: RunConfig, weights: str | None) -> dict:
    """Task metrics of the target network, or of saved (edited) weights for it."""
    from safetensors.torch import load_file

    world = build_world(cfg)
    if weights:
        if not Path(weights).is_file():
            raise UserError(f"weights file '{weights}' does not exist")
        state = load_file(weights)
        current = world.model.state_dict()
        missing = sorted(set(current) - set(state))
        if missing:
            raise UserError(f"'{weights}' lacks parameter '{missing[0]}' of the {cfg.dataset} target")
        for name, tensor in current.items():
            if tuple(state[name].shape) != tuple(tensor.shape):
                raise UserError(f"'{weights}': parameter '{name}' has shape {tuple(state[name].shape)}, "
                                f"the {cfg.dataset} target expects {tuple(tensor.shape)}")
        with torch.no_grad():
            for name, tensor in current.items():
                tensor.copy_(state[name])
    # A full forward pass: saved weights may differ anywhere, also before the edited layers.
    if getattr(world.task, "metric_input", "labels") == "scores":
        return world.task.metrics(full_model_scores(world.model))
    return world.task.metrics(full_model_predict(world.model))
