"""`rledit train`: the whole run, top to bottom.

1. build a local world in the driver (validates data, target and layer names before Ray
   starts; it also measures "before" and a random policy, and evaluates checkpoints);
2. train PPO on RLlib EnvRunners that each build their own worlds from the same config;
3. every `eval_every` iterations apply the deterministic policy in the local world, score
   it on the validation split, and keep the best checkpoint (the mean action's edit jumps
   between iterations, so the last one is not always the best);
4. apply the best policy once more and report accuracies on every pool.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np

from rledit_ray import generalist
from rledit_ray.build import PARTS_KEY, build_env, build_world, ship_parts
from rledit_ray.config import RunConfig
from rledit_ray.errors import UserError
from rledit_ray.report import write_config, write_curves, write_json, write_report
from rledit_ray.targets import save_weights
from rledit_ray.worlds import WORLD_IDS
from rledit_ray.worlds.rollout import random_policy, run_episode

log = logging.getLogger(__name__)
RANDOM_EPISODES = 20
RESUME_STATE = "rledit_state.json"


def check_run_dir(out: str | Path) -> Path:
    """The run directory `out` may become, refused while nothing is written yet."""
    out = Path(out).resolve()
    if out.exists() and not out.is_dir():
        raise UserError(f"--out '{out}' is a file: choose a folder for the run")
    if (out / "metrics.json").exists():
        raise UserError(f"'{out}' already holds a finished run: choose another --out")
    return out


def prepare_run_dir(out: str | Path) -> Path:
    out = check_run_dir(out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def random_policy_metrics(world, task, episodes: int = RANDOM_EPISODES, seed: int = 0) -> dict:
    """Mean test/validation metrics of the edits a uniform random policy makes (scalars only)."""
    act = random_policy(world, seed)
    runs = []
    for ep in range(episodes):
        run_episode(world, act, seed=seed + ep)
        runs.append(world.task_metrics(pools=("validation", "test")))
    return {k: float(np.mean([r[k] for r in runs])) for k, v in runs[0].items() if isinstance(v, (int, float))}


def ensure_ray(address: str | None = None) -> None:
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if address or os.environ.get("RAY_ADDRESS"):
        ray.init(address=address, log_to_driver=False)  # a cluster, e.g. under `ray job submit`
    else:
        ray.init(include_dashboard=False, log_to_driver=False,
                 object_store_memory=300 * 2**20, _node_ip_address="127.0.0.2")


def build_algo(cfg: RunConfig, world):
    """The PPO algorithm for `cfg`, its policy heads shaped by `world` (a world of `cfg`), its
    EnvRunners' worlds built over the Parts of `world` (shipped through the object store)."""
    from rledit_ray.agent import AgentSettings, build_ppo_config

    many = cfg.generalist is not None
    settings = AgentSettings(**cfg.agent.model_dump(), seed=cfg.seed, module="rowwise" if many else "factorized")
    env_config = {**cfg.model_dump(mode="json"), "factor_layout": world.factor_layout,
                  **({"obs_layout": world.obs_layout} if many else {}), PARTS_KEY: ship_parts(world.parts)}
    return build_ppo_config(WORLD_IDS[cfg.world], build_env, env_config, settings).build_algo()


def train(cfg: RunConfig, out: str | Path, progress=print, address: str | None = None,
          resume: bool = False, on_iteration=None, parts=None) -> dict:
    """`resume`: continue an unfinished run in `out` from its checkpoint (the best so far,
    with the history up to it; the iterations after it are trained again).
    `on_iteration(row)` sees each iteration's row (Tune trials report it).
    `parts`: the run's target and task when the caller built them (the Python API and Tune
    trials do)."""
    from rledit_ray.agent import deterministic_action, module_from_algo

    started = time.perf_counter()
    check_run_dir(out)
    # Data, target, layers and classes are checked (by building the world) before anything is written.
    world = build_world(cfg, parts)
    run_dir = prepare_run_dir(out)
    config_dict = cfg.model_dump(mode="json")
    write_config(run_dir / "config.yaml", config_dict)
    task = world.task
    many = cfg.generalist is not None  # one policy over many requests (generalist.py)
    if many:
        before, rand = _generalist_before(world, cfg, progress)
        before_scores = None
    else:
        run_episode(world, lambda obs: np.zeros(world.action_space.shape, np.float32))
        before = world.task_metrics()
        # Tasks with paired bootstrap intervals (bias) compare the same test rows before/after.
        before_scores = task.pool_scores(world.scores, "test") if hasattr(task, "paired_intervals") else None
        rand = random_policy_metrics(world, task, seed=cfg.seed)
        progress(f"before: {task.summary(before)} | random policy: {task.summary(rand)}")

    ensure_ray(address)
    algo = build_algo(cfg, world)

    history, best, env_steps, ckpt = [], None, 0, run_dir / "checkpoint"
    first = 1
    if resume:
        history, best, env_steps = _restore(algo, ckpt)
        first = history[-1]["iteration"] + 1
        progress(f"resumed from iteration {first - 1} ({env_steps} env steps): {ckpt}")
    try:
        for it in range(first, cfg.training.iterations + 1):
            t0 = time.perf_counter()
            result = algo.train()
            env_steps = _env_steps(result, env_steps)
            row = {"iteration": it, "env_steps": env_steps,
                   "episode_return_mean": _return_mean(result),
                   "env_steps_per_s": _steps_this_iter(result) / max(time.perf_counter() - t0, 1e-9)}
            if it % cfg.training.eval_every == 0 or it == cfg.training.iterations:
                module = module_from_algo(algo)
                policy = lambda obs: deterministic_action(module, obs)  # noqa: E731
                if many:
                    row.update(generalist.validation_row(world, policy, cfg.generalist.train_classes))
                else:
                    run_episode(world, policy)
                    row.update(world.task_metrics(pools=("validation",)))
                score = row["selection_score"] = task.selection_score(row)
                if best is None or score > best["score"]:
                    best = {"score": score, "iteration": it}
                    _save_checkpoint_atomically(algo, ckpt, config_dict,
                                                {"history": [*history, row], "best": best, "env_steps": env_steps})
            history.append(row)
            progress(_progress_line(row, cfg.training.iterations, task, many))
            if on_iteration is not None:
                on_iteration(row)
            if (generalist.met_stop if many else task.met_stop)(row, cfg.training):
                progress(f"validation target met at iteration {it}: stopping early")
                break
    finally:
        algo.stop()

    from rledit_ray.agent import load_module

    best_module = load_module(str(ckpt))
    best_policy = lambda obs: deterministic_action(best_module, obs)  # noqa: E731
    extra = {}
    if many:
        after, final, extra = _generalist_after(world, best_policy, cfg)
    else:
        final = run_episode(world, best_policy)
        after = world.task_metrics()
    # A generalist run's world holds the edit for the last request it served (named here).
    save_weights(world.model, run_dir / "edited_weights.safetensors",
                 {"task": cfg.task, "dataset": cfg.dataset, "world": cfg.world, "seed": cfg.seed,
                  "edit": cfg.edit, "target": world.target_metadata,
                  **({"forget_class": world.request} if many else {})})
    metrics = {
        "task": cfg.task, "world": cfg.world, "seed": cfg.seed, "dataset": cfg.dataset,
        **({"forget_classes": cfg.forget_classes} if cfg.task == "unlearning" else {}),
        "edit": cfg.edit, "rank": cfg.rank,
        "episode_length": cfg.episode_length, "step_size": cfg.effective_step_size,
        "before": before, "after": after, "random_policy": rand,
        "final_selection_score": task.selection_score(after),
        "final_reward_terms": dict(final),
        "env_steps": env_steps, "iterations": len(history), "best_iteration": best["iteration"],
        "wall_time_s": time.perf_counter() - started,
        "target": world.target_metadata, "history": history, **extra,
    }
    if before_scores is not None:
        metrics["intervals"] = task.paired_intervals(before_scores, task.pool_scores(world.scores, "test"))
    write_curves(run_dir / "curves.png", history, task.curve_keys)
    write_report(run_dir / "report.md", metrics, config_dict, task,
                 sections=[generalist.report_section(metrics)] if many else None)
    write_json(run_dir / "metrics.json", metrics)  # last: its presence marks a finished run
    progress(f"after: {task.summary(after)} | "
             f"{env_steps} env steps, {metrics['wall_time_s']:.0f} s | run dir: {run_dir}")
    return metrics


def _generalist_before(world, cfg: RunConfig, progress) -> tuple[dict, dict]:
    """The unedited network and a uniform random policy, averaged over the held-out requests
    (the numbers "after" is compared with)."""
    g = cfg.generalist
    before = generalist.mean_over(generalist.per_request(world, generalist.no_edit(world), g.heldout_classes))
    rand = generalist.mean_over(generalist.per_request(world, random_policy(world, cfg.seed), g.heldout_classes))
    world.use_request(None)
    summary = world.task.summary
    progress(f"generalist: train requests {g.train_classes}, held out {g.heldout_classes} | held-out mean "
             f"before: {summary(before)} | random policy: {summary(rand)}")
    return before, rand


def _generalist_after(world, policy, cfg: RunConfig) -> tuple[dict, dict, dict]:
    """Held-out means as `after` (so summaries read like any run), every request's metrics."""
    g = cfg.generalist
    results = generalist.per_request(world, policy, [*g.train_classes, *g.heldout_classes])
    after = generalist.mean_over({k: results[k] for k in g.heldout_classes})
    final = results[g.heldout_classes[0]]["final_reward_terms"] if g.heldout_classes else {}
    world.use_request(None)
    return after, final, {"per_request": {str(k): r for k, r in results.items()},
                          "train_classes": list(g.train_classes), "heldout_classes": list(g.heldout_classes)}


def _save_checkpoint_atomically(algo, path: Path, config_dict: dict, state: dict | None = None) -> None:
    """Write to a temporary folder, then swap it in: a kill never leaves a half checkpoint.
    The run config travels inside, so a checkpoint alone is enough for `rledit edit`;
    `state` (history, best) lets `--resume` continue from it."""
    from rledit_ray.editing import CONFIG_NAME

    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    algo.save_to_path(str(tmp))
    write_config(tmp / CONFIG_NAME, config_dict)
    if state is not None:
        write_json(tmp / RESUME_STATE, state)
    old = path.with_name(path.name + ".old")
    if path.exists():
        path.rename(old)
    tmp.rename(path)
    shutil.rmtree(old, ignore_errors=True)


def _restore(algo, ckpt: Path) -> tuple[list, dict, int]:
    """Algorithm state, history and best score from a checkpoint that `train` wrote."""
    if not (ckpt / RESUME_STATE).is_file():
        raise UserError(f"nothing to resume: no checkpoint with {RESUME_STATE} in '{ckpt.parent}'")
    state = json.loads((ckpt / RESUME_STATE).read_text())
    algo.restore_from_path(str(ckpt))
    return state["history"], state["best"], int(state["env_steps"])


def _progress_line(row: dict, total: int, task, many: bool = False) -> str:
    line = (f"iter {row['iteration']:3d}/{total} | env steps {row['env_steps']:7d} | "
            f"{row['env_steps_per_s']:6.0f} steps/s | return {row['episode_return_mean']:+.3f}")
    return line + (generalist.progress(row) if many else task.progress(row))


def _env_steps(result: dict, previous: int) -> int:
    from ray.rllib.utils.metrics import ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME

    return int(result.get(ENV_RUNNER_RESULTS, {}).get(NUM_ENV_STEPS_SAMPLED_LIFETIME,
               result.get(NUM_ENV_STEPS_SAMPLED_LIFETIME, previous)))


def _steps_this_iter(result: dict) -> float:
    from ray.rllib.utils.metrics import ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED

    return float(result.get(ENV_RUNNER_RESULTS, {}).get(NUM_ENV_STEPS_SAMPLED, 0.0))


def _return_mean(result: dict) -> float:
    from ray.rllib.utils.metrics import ENV_RUNNER_RESULTS, EPISODE_RETURN_MEAN

    value = result.get(ENV_RUNNER_RESULTS, {}).get(EPISODE_RETURN_MEAN, float("nan"))
    return float(value)
