"""Use a trained policy or saved weights without training: `rledit edit` and `rledit eval`."""
from __future__ import annotations

import json
import pickle
import time
from pathlib import Path

import numpy as np

from rledit_ray.atomic import save_weights, write_json
from rledit_ray.build import build_world
from rledit_ray.config import RunConfig, load_config
from rledit_ray.errors import UserError, one_line
from rledit_ray.model_card import write_model_card
from rledit_ray.outputs import check_output, make_output
from rledit_ray.targets import full_model_predict, full_model_scores
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


# What reading a damaged or partial checkpoint raises: torch and RLlib read pickles, JSON and
# msgpack files, and a missing file surfaces as FileNotFoundError or as RLlib's ValueError.
CHECKPOINT_ERRORS = (OSError, EOFError, pickle.UnpicklingError, ValueError, KeyError, AttributeError,
                     ImportError, RuntimeError)


def _damaged(ckpt: Path, err: Exception) -> UserError:
    return UserError(f"checkpoint '{ckpt}' cannot be loaded ({type(err).__name__}: {one_line(err, 120)}): it is "
                     f"damaged or partial; train the run again")


def load_checkpoint_module(ckpt: Path):
    """The policy saved in checkpoint folder `ckpt`; a damaged or partial one is one line."""
    from rledit_ray.agent import load_module

    try:
        return load_module(str(ckpt))
    except CHECKPOINT_ERRORS as err:
        raise _damaged(ckpt, err) from None


def checkpoint_policy(ckpt: Path, world):
    """The checkpoint's deterministic policy, obs -> action: without RLlib (agent/serving.py)
    when the checkpoint says how (rledit_policy.json, which every checkpoint saved since has),
    else through RLlib's module; a damaged or partial checkpoint is one line."""
    from rledit_ray.agent.serving import POLICY_SPEC
    from rledit_ray.agent.serving import load_policy as serving_policy

    try:
        if (ckpt / POLICY_SPEC).is_file():
            spec = json.loads((ckpt / POLICY_SPEC).read_text(encoding="utf-8"))
            return serving_policy(ckpt, spec, world.action_space.low, world.action_space.high)
    except CHECKPOINT_ERRORS as err:
        raise _damaged(ckpt, err) from None
    from rledit_ray.agent import deterministic_action

    module = load_checkpoint_module(ckpt)
    return lambda obs: deterministic_action(module, obs)


def load_policy(checkpoint: str | Path, forget_class: int | None = None, serving: bool = True):
    """(config, checkpoint dir, world, policy: obs -> deterministic action); the request is
    checked before the policy loads. `serving`: a generalist needs its request named."""
    ckpt, config_path = find_checkpoint(checkpoint)
    cfg = load_config(config_path)
    if forget_class is not None and cfg.generalist is None:
        raise UserError(f"'{checkpoint}' was trained for forget class {cfg.forget_classes} only: --forget-class "
                        f"needs a generalist checkpoint (trained with a generalist: section)")
    if serving and forget_class is None and cfg.generalist is not None:
        raise UserError(f"'{checkpoint}' is a generalist policy: name the request with --forget-class K")
    world = build_world(cfg)
    if forget_class is not None:
        world.requests.check(forget_class)
    return cfg, ckpt, world, checkpoint_policy(ckpt, world)


def apply_checkpoint(checkpoint: str | Path, out: str | Path, forget_class: int | None = None,
                     repeat: int = 1) -> dict:
    """Apply the trained policy deterministically to the target; save weights + metrics.
    A generalist checkpoint serves the request `forget_class` (any class of the label set).
    `out` must be a new or empty folder: an edit never replaces a run's or an earlier edit's files."""
    if repeat < 1:
        raise UserError(f"--repeat must be >= 1 (got {repeat})")
    generalist = load_config(find_checkpoint(checkpoint)[1]).generalist is not None
    if repeat > 1 and forget_class is None and not generalist:
        raise UserError("--repeat times serving a request: it needs a generalist checkpoint and --forget-class")
    out = check_output(out, "--out")
    if forget_class is not None or generalist:
        return serve_request(checkpoint, out, forget_class, repeat)
    cfg, ckpt, world, policy = load_policy(checkpoint)
    run_episode(world, lambda obs: np.zeros(world.action_space.shape, np.float32))
    before = world.task_metrics(pools=("test",))
    started = time.perf_counter()
    terms = run_episode(world, policy)
    seconds = time.perf_counter() - started
    after = world.task_metrics()
    out = make_output(out, "--out")
    save_weights(world.model, out / "edited_weights.safetensors",
                 {"checkpoint": str(Path(ckpt).resolve()), "world": cfg.world, "edit": cfg.edit})
    result = {"task": cfg.task, "world": cfg.world, "seed": cfg.seed, "before": before, "after": after,
              "final_reward_terms": terms, "edit_seconds": seconds, "summary": world.task.summary(after)}
    write_json(out / "metrics.json", result)
    write_model_card(out, cfg, {**result, "target": world.target_metadata}, world.task,
                     f"rledit edit --checkpoint {ckpt} --out {out}", checkpoint=str(ckpt))
    return result


def serve_request(checkpoint: str | Path, out: str | Path, forget_class: int | None, repeat: int = 1) -> dict:
    """One request with a generalist policy: T deterministic steps, timed from the moment the
    request is known (its reward samples are gathered inside the timing; loading is not).
    `repeat` > 1 serves it that many times from scratch and reports the median and max time."""
    from rledit_ray.generalist import no_edit, serve

    if repeat < 1:
        raise UserError(f"--repeat must be >= 1 (got {repeat})")
    out = check_output(out, "--out")
    started = time.perf_counter()
    cfg, ckpt, world, policy = load_policy(checkpoint, forget_class)
    load_seconds = time.perf_counter() - started
    timings = []
    for i in range(repeat):
        if i:
            world.drop_request(forget_class)
        terms, seconds = serve(world, policy, forget_class)
        timings.append(seconds)
    after = world.task_metrics(pools=("validation", "test"))
    out = make_output(out, "--out")
    save_weights(world.model, out / "edited_weights.safetensors",
                 {"checkpoint": str(Path(ckpt).resolve()), "world": cfg.world, "edit": cfg.edit,
                  "forget_class": forget_class})
    serve(world, no_edit(world), forget_class)  # the unedited network on the same request
    before = world.task_metrics(pools=("test",))
    result = {"task": cfg.task, "world": cfg.world, "seed": cfg.seed, "forget_class": forget_class,
              "seen_in_training": forget_class in cfg.generalist.train_classes,
              "before": before, "after": after, "final_reward_terms": terms,
              "edit_seconds": timings[0], "edit_seconds_all": timings,
              "edit_seconds_median": float(np.median(timings)), "edit_seconds_max": max(timings),
              "load_seconds": load_seconds,
              "summary": world.task.summary(after)}
    write_json(out / "metrics.json", result)
    return result


def evaluate_weights(cfg: RunConfig, weights: str | None) -> dict:
    """Task metrics of the target network, or of saved (edited) weights for it."""
    from rledit_ray.targets.sources import load_weights

    world = build_world(cfg)
    if weights:
        load_weights(world.model, weights)
    # A full forward pass: saved weights may differ anywhere, also before the edited layers.
    if getattr(world.task, "metric_input", "labels") == "scores":
        return world.task.metrics(full_model_scores(world.model))
    return world.task.metrics(full_model_predict(world.model))
