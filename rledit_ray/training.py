"""`rledit train`: the whole run, top to bottom.

1. build a local world in the driver (validates data, target and layer names before Ray
   starts; it also measures "before" and a random policy, and evaluates checkpoints);
2. train PPO on RLlib EnvRunners that each build their own worlds from the same config;
3. every `eval_every` iterations apply the deterministic policy in the local world, score
   it on the validation split, and keep the best checkpoint (the mean action's edit jumps
   between iterations, so the last one is not always the best);
4. apply the best policy once more and report accuracies on every pool.

A single-request run and a generalist run differ in what "before", a validation score and
"after" mean: each is a strategy (strategies.py) that this one loop consults.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

from rledit_ray.atomic import replace_folder, save_weights, write_json, write_yaml
from rledit_ray.build import PARTS_KEY, build_env, build_world, ship_parts
from rledit_ray.config import RunConfig
from rledit_ray.connect import agent_resources, check_address, check_resources, ensure_ray, start_ray_early
from rledit_ray.errors import UserError
from rledit_ray.figures import pyplot
from rledit_ray.model_card import reproduce_command, write_model_card
from rledit_ray.outputs import UNFINISHED_RUN, check_output, folder_kind, make_output
from rledit_ray.progress import Progress
from rledit_ray.report import write_curves, write_report
from rledit_ray.run_figures import forgotten_classes, write_run_figures
from rledit_ray.strategies import strategy_for
from rledit_ray.tensorboard_log import OPTIMISER_STATS, TensorBoardLog
from rledit_ray.timing import Phases
from rledit_ray.worlds import WORLD_IDS

log = logging.getLogger(__name__)
RESUME_STATE = "rledit_state.json"


def check_run_dir(out: str | Path, resume: bool = False, restart: bool = False) -> Path:
    """The run directory `out` may become, refused while nothing is written yet: a finished
    run is never written into, an unfinished one only to resume it (`resume`) or, for a
    caller that owns it, to train it again from scratch (`restart`: compare's own rows)."""
    accept = (UNFINISHED_RUN,) if resume or restart else ()
    out = check_output(out, "--out", accept=accept)
    if resume and folder_kind(out) != UNFINISHED_RUN:
        raise UserError(f"nothing to resume in '{out}': it holds no unfinished run")
    return out


def prepare_run_dir(out: str | Path, resume: bool = False, restart: bool = False) -> Path:
    return make_output(check_run_dir(out, resume, restart), "--out")


def check_resumable(out: str | Path) -> dict:
    """Refuse to resume a run whose checkpoint is missing, damaged or partial, before any work;
    return its resume state (history, best, env steps)."""
    from rledit_ray.editing import load_checkpoint_module

    ckpt = Path(out).resolve() / "checkpoint"
    if not (ckpt / RESUME_STATE).is_file():
        raise UserError(f"nothing to resume: no checkpoint with {RESUME_STATE} in '{ckpt.parent}' (the run stopped "
                        f"before its first evaluation): start it again with a new --out")
    try:  # what a resumed run reads; JSONDecodeError and UnicodeDecodeError are ValueErrors
        state = json.loads((ckpt / RESUME_STATE).read_text(encoding="utf-8"))
        readable = int(state["env_steps"]) >= 0 and "iteration" in state["best"] and "iteration" in state["history"][-1]
    except (ValueError, KeyError, IndexError, TypeError):
        readable = False
    if not readable:
        raise UserError(f"cannot resume '{ckpt.parent}': '{ckpt / RESUME_STATE}' is damaged")
    load_checkpoint_module(ckpt)
    return state


def build_algo(cfg: RunConfig, world, strategy=None):
    """The PPO algorithm for `cfg`, its policy heads shaped by `world` (a world of `cfg`), its
    EnvRunners' worlds built over the Parts of `world` (shipped through the object store)."""
    from rledit_ray.agent import AgentSettings, build_ppo_config

    strategy = strategy or strategy_for(cfg, world)
    settings = AgentSettings(**cfg.agent.model_dump(), seed=cfg.seed, es_folds=cfg.samples.folds,
                             module=strategy.module)
    env_config = {**cfg.model_dump(mode="json"), "factor_layout": world.factor_layout,
                  **strategy.env_config(), PARTS_KEY: ship_parts(world.parts)}
    return build_ppo_config(WORLD_IDS[cfg.world], build_env, env_config, settings).build_algo()


def train(cfg: RunConfig, out: str | Path, progress=print, address: str | None = None,
          resume: bool = False, on_iteration=None, parts=None, restart: bool = False) -> dict:
    """`resume`: continue an unfinished run in `out` from its checkpoint (the best so far,
    with the history up to it; the iterations after it are trained again). `restart`: train
    an unfinished run in `out` again from scratch (a caller's own run, as compare's rows).
    `on_iteration(row)` sees each iteration's row (Tune trials report it).
    `parts`: the run's target and task when the caller built them (the Python API and Tune
    trials do)."""
    phases = Phases()
    # Everything is checked before the first file is written: the output folder, the cluster
    # address, the checkpoint to resume, then (by building the world) data, target, layers and
    # classes, then the resources against the cluster and the agent's settings (by building it).
    check_run_dir(out, resume, restart)
    check_address(address)
    resumed = check_resumable(out) if resume else None
    start_ray_early(address)  # its seconds overlap the world's build
    imports = _import_ahead()  # and so do the imports the agent and figures need
    world = build_world(cfg, parts)
    strategy = strategy_for(cfg, world)
    check_resources(*agent_resources(cfg.agent, address), "the agent's EnvRunners and learners (--env-runners, "
                    "agent:)", address)
    phases.done("load")
    before, rand = strategy.before(progress)  # while Ray starts
    phases.done("before")
    imports.join()
    _agent_imports()  # done by now (or the import's own error, raised here)
    ensure_ray(address)
    phases.done("ray")
    algo = build_algo(cfg, world, strategy)
    phases.done("agent")
    try:
        run_dir = prepare_run_dir(out, resume, restart)
        write_yaml(run_dir / "config.yaml", cfg.model_dump(mode="json"))
        history, best, env_steps = _iterate(algo, cfg, strategy, run_dir, progress, resumed, on_iteration)
    finally:
        algo.stop()
    phases.done("train")

    from rledit_ray.editing import checkpoint_policy

    after, final, extra = strategy.after(checkpoint_policy(run_dir / "checkpoint", world))
    phases.done("after")
    metrics = {
        "task": cfg.task, "world": cfg.world, "seed": cfg.seed, "dataset": cfg.dataset,
        **({"forget_classes": cfg.forget_classes} if cfg.task == "unlearning" else {}),
        "edit": cfg.edit, "rank": cfg.rank, "algorithm": cfg.agent.algorithm,
        "episode_length": cfg.episode_length, "step_size": cfg.effective_step_size,
        "before": before, "after": after, "random_policy": rand,
        "final_selection_score": world.task.selection_score(after),
        "final_reward_terms": dict(final),
        "env_steps": env_steps, "iterations": len(history), "best_iteration": best["iteration"],
        "wall_time_s": phases.total(),  # and again once the files are written (_write_run)
        "target": world.target_metadata, "history": history, **extra,
    }
    _write_run(run_dir, cfg, world, strategy, metrics, phases)
    progress(f"after: {world.task.summary(after)} | "
             f"{env_steps} env steps, {metrics['wall_time_s']:.0f} s | run dir: {run_dir}")
    return metrics


def _agent_imports() -> None:
    """What the agent and the figures import: RLlib's PPO (~0.9 s here), torch's compiler stack
    (~1.1 s: torch.optim's first parameter group imports torch._dynamo, RLlib's seeding
    torch._inductor) and matplotlib (~0.45 s)."""
    import torch._inductor, rledit_ray.agent.ppo  # noqa: F401, E401, I001
    pyplot()


def _import_ahead() -> threading.Thread:
    """Begin `_agent_imports` in a background thread. The world's build that runs meanwhile is
    mostly numpy and torch work that releases the GIL, and imports none of those modules (no
    import-lock cycle). A failed import is left to the main thread's own."""
    def run() -> None:
        try:
            _agent_imports()
        except BaseException:  # the main thread imports it again and meets the error there
            pass

    thread = threading.Thread(target=run, name="rledit-imports", daemon=True)
    thread.start()
    return thread


def _iterate(algo, cfg: RunConfig, strategy, run_dir: Path, progress, resumed: dict | None, on_iteration):
    """PPO iterations; every `eval_every`, the deterministic policy is scored on validation and
    the best so far checkpointed. `resumed`: the checkpoint's resume state, to continue from
    it. Returns (history, best, env steps)."""
    from rledit_ray.agent import deterministic_action, module_from_algo
    from rledit_ray.agent.serving import policy_spec

    history, best, env_steps, ckpt = [], None, 0, run_dir / "checkpoint"
    spec = policy_spec(module_from_algo(algo))
    first = 1
    if resumed is not None:
        algo.restore_from_path(str(ckpt))
        history, best, env_steps = resumed["history"], resumed["best"], int(resumed["env_steps"])
        first = history[-1]["iteration"] + 1
        progress(f"resumed from iteration {first - 1} ({env_steps} env steps): {ckpt}")
    board = TensorBoardLog(run_dir / "tb", retrain_from=first)
    # The loop prints its own line per iteration: the bar draws on a terminal only.
    bar = Progress("PPO", total=cfg.training.iterations, unit="iter", initial=first - 1, lines=False)
    say = bar.printer(progress)
    for it in range(first, cfg.training.iterations + 1):
        t0 = time.perf_counter()
        result = algo.train()
        env_steps = _env_steps(result, env_steps)
        row = {"iteration": it, "env_steps": env_steps,
               "episode_return_mean": _return_mean(result),
               "env_steps_per_s": _steps_this_iter(result) / max(time.perf_counter() - t0, 1e-9),
               **_optimiser_stats(result)}
        if it % cfg.training.eval_every == 0 or it == cfg.training.iterations:
            module = module_from_algo(algo)
            row.update(strategy.validation_row(lambda obs, module=module: deterministic_action(module, obs)))
            score = row["selection_score"] = strategy.task.selection_score(row)
            if best is None or score > best["score"]:
                best = {"score": score, "iteration": it}
                _save_checkpoint_atomically(algo, ckpt, cfg.model_dump(mode="json"),
                                            {"history": [*history, row], "best": best, "env_steps": env_steps}, spec)
        history.append(row)
        board.iteration(row, result)
        bar.update(**{"return": f"{row['episode_return_mean']:+.3f}"})
        say(_progress_line(row, cfg.training.iterations) + strategy.progress(row))
        if on_iteration is not None:
            on_iteration(row)
        if strategy.met_stop(row):
            say(f"validation target met at iteration {it}: stopping early")
            break
    bar.close()
    return history, best, env_steps


def _write_run(run_dir: Path, cfg: RunConfig, world, strategy, metrics: dict, phases: Phases) -> None:
    """The edited weights, curves, figures, report, model card and final TensorBoard scalars;
    metrics.json last: its presence marks a finished run (with the seconds this took, and the
    run's wall time up to it)."""
    config_dict = cfg.model_dump(mode="json")
    save_weights(world.model, run_dir / "edited_weights.safetensors",
                 {"task": cfg.task, "dataset": cfg.dataset, "world": cfg.world, "seed": cfg.seed,
                  "edit": cfg.edit, "target": world.target_metadata, **strategy.weights_metadata()})
    write_curves(run_dir / "curves.png", metrics["history"], world.task.curve_keys)
    shown, extra = write_run_figures(run_dir, world, cfg, metrics)
    metrics.update(extra)
    write_report(run_dir / "report.md", metrics, config_dict, world.task, sections=strategy.report_sections(metrics),
                 figures=shown)
    write_model_card(run_dir, cfg, metrics, world.task, reproduce_command(cfg), figures=shown,
                     forgotten=forgotten_classes(world, cfg))
    TensorBoardLog(run_dir / "tb").final(metrics["after"], metrics["env_steps"])
    phases.done("write")
    metrics.update(phase_seconds=dict(phases.seconds), wall_time_s=phases.total())
    write_json(run_dir / "metrics.json", metrics)


def _save_checkpoint_atomically(algo, path: Path, config_dict: dict, state: dict | None = None,
                                policy: dict | None = None) -> None:
    """Write to a temporary folder, then swap it in: a kill never leaves a half checkpoint.
    The run config travels inside, so a checkpoint alone is enough for `rledit edit`;
    `state` (history, best) lets `--resume` continue from it; `policy` (serving.policy_spec)
    lets `rledit edit` serve it without RLlib."""
    from rledit_ray.agent.serving import POLICY_SPEC
    from rledit_ray.editing import CONFIG_NAME

    def fill(tmp: Path) -> None:
        algo.save_to_path(str(tmp))
        write_yaml(tmp / CONFIG_NAME, config_dict)
        if policy is not None:
            write_json(tmp / POLICY_SPEC, policy)  # serving without RLlib
        if state is not None:
            write_json(tmp / RESUME_STATE, state)

    replace_folder(path, fill)


def _progress_line(row: dict, total: int) -> str:
    return (f"iter {row['iteration']:3d}/{total} | env steps {row['env_steps']:7d} | "
            f"{row['env_steps_per_s']:6.0f} steps/s | return {row['episode_return_mean']:+.3f}")


def _env_steps(result: dict, previous: int) -> int:
    from ray.rllib.utils.metrics import ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME

    return int(result.get(ENV_RUNNER_RESULTS, {}).get(NUM_ENV_STEPS_SAMPLED_LIFETIME,
               result.get(NUM_ENV_STEPS_SAMPLED_LIFETIME, previous)))


def _steps_this_iter(result: dict) -> float:
    from ray.rllib.utils.metrics import ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED

    return float(result.get(ENV_RUNNER_RESULTS, {}).get(NUM_ENV_STEPS_SAMPLED, 0.0))


def _optimiser_stats(result: dict) -> dict:
    from ray.rllib.core import DEFAULT_MODULE_ID
    from ray.rllib.utils.metrics import LEARNER_RESULTS

    stats = result.get(LEARNER_RESULTS, {}).get(DEFAULT_MODULE_ID, {})
    return {k: float(stats[k]) for k in OPTIMISER_STATS if k in stats}


def _return_mean(result: dict) -> float:
    from ray.rllib.utils.metrics import ENV_RUNNER_RESULTS, EPISODE_RETURN_MEAN

    value = result.get(ENV_RUNNER_RESULTS, {}).get(EPISODE_RETURN_MEAN, float("nan"))
    return float(value)
