"""PPO configuration for editing worlds (RLlib new API stack, ray 2.60).

`build_ppo_config` turns a small `AgentSettings` dataclass plus a gymnasium env creator
into a ready `PPOConfig` that uses `FactorizedPPOModule`. Typical use:

    config = build_ppo_config("shift-world", make_env, env_config, AgentSettings())
    algo = config.build_algo()
    for _ in range(n):
        result = algo.train()
        result["env_runners"]["episode_return_mean"]

Defaults (rledit_ray/defaults.py) follow docs/design.md's measured findings: gamma 1 (episodes are ~5 steps, every step's
reward counts), no KL loss, lr 1e-3, clip 0.3. The learner is RLlib's PPO learner with a
dual-clipped surrogate (agent/learner.py), which stays finite for wide edit actions.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Callable, Dict, List

import ray
import torch
from ray.rllib.algorithms.ppo import PPOConfig
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.tune.registry import register_env

from rledit_ray import defaults as D
from rledit_ray.agent.es import EditES
from rledit_ray.agent.learner import EditPPOLearner
from rledit_ray.agent.module import FactorizedPPOModule
from rledit_ray.agent.nets import factor_sizes
from rledit_ray.agent.rowwise import RowwisePPOModule
from rledit_ray.errors import UserError

logger = logging.getLogger(__name__)
A = D.AGENT
MODULES = {"factorized": FactorizedPPOModule, "rowwise": RowwisePPOModule}
ALGORITHMS = ("ppo", "es")


@dataclasses.dataclass
class AgentSettings:
    """Knobs of the PPO agent; everything else keeps RLlib's defaults."""

    num_env_runners: int = A["num_env_runners"]
    num_envs_per_env_runner: int = A["num_envs_per_env_runner"]
    # "batched" asks the env creator for all sub-envs of a runner at once (it receives
    # `num_envs` in its config and must return a gymnasium VectorEnv, as
    # rledit_ray.build.build_env does); "sync" is RLlib's SyncVectorEnv.
    vectorize: str = A["vectorize"]
    num_gpus_per_env_runner: float = A["num_gpus_per_env_runner"]
    num_learners: int = A["num_learners"]
    num_gpus_per_learner: float = A["num_gpus_per_learner"]
    lr: float = A["lr"]
    gamma: float = A["gamma"]
    lambda_: float = A["lambda_"]
    clip_param: float = A["clip_param"]
    # Squared value errors are clamped here (RLlib's default): a sample beyond it trains
    # the critic no more, so it must exceed (return - value)^2 of a typical episode.
    vf_clip_param: float = A["vf_clip_param"]
    entropy_coeff: float = A["entropy_coeff"]
    use_kl_loss: bool = False
    train_batch_size: int = A["train_batch_size"]  # env steps per training iteration, all learners
    minibatch_size: int = A["minibatch_size"]
    num_epochs: int = A["num_epochs"]
    hidden: List[int] = dataclasses.field(default_factory=lambda: list(A["hidden"]))
    initial_log_std: float = A["initial_log_std"]
    seed: int = 0
    restart_failed_env_runners: bool = True
    # "factorized" (module.py, any observation) or "rowwise" (rowwise.py: needs the world's
    # row-wise observation and env_config["obs_layout"]; serves unseen requests).
    module: str = "factorized"
    algorithm: str = A["algorithm"]  # "ppo" or "es" (es.py)
    ppo_logp: str = A["ppo_logp"]  # "sum" (the joint log-prob) or "mean" over dims (learner.py)
    es_population: int = A["es_population"]
    es_sigma: float = A["es_sigma"]
    es_lr: float = A["es_lr"]
    es_folds: int = D.SAMPLE_FOLDS  # the run's samples.folds: ES iteration i scores on reward set i mod folds


def gpus_available() -> bool:
    """True if this process sees CUDA, or the connected Ray cluster has GPUs.

    The cluster check matters for a CPU-only head node with GPU workers (e.g. KubeRay).
    An autoscaler that starts GPU nodes only on demand is not detected: run such
    drivers with the GPUs already up, or on a GPU node.
    """
    if torch.cuda.is_available():
        return True
    return ray.is_initialized() and ray.cluster_resources().get("GPU", 0) > 0


def cpu_fallback(settings: AgentSettings) -> AgentSettings:
    """Return settings with GPU requests zeroed when no GPU is available.

    Ray waits forever for a GPU resource that no node has, without an error, so a
    config asking for one on a CPU-only box would hang in `build_algo()`.
    """
    wants_gpu = max(settings.num_gpus_per_env_runner, settings.num_gpus_per_learner) > 0
    if not wants_gpu or gpus_available():
        return settings
    logger.warning(
        "GPUs requested (env runner %s, learner %s) but no GPU is available: "
        "running on CPU instead.",
        settings.num_gpus_per_env_runner,
        settings.num_gpus_per_learner,
    )
    return dataclasses.replace(
        settings, num_gpus_per_env_runner=0.0, num_gpus_per_learner=0.0
    )


def runner_env_config(env_config: Dict[str, Any], s: AgentSettings) -> Dict[str, Any]:
    """The env_config remote EnvRunners get: `device: auto` becomes `cpu` for runners
    that hold no GPU.

    Ray 2.60 no longer empties CUDA_VISIBLE_DEVICES for actors given zero GPUs (ray
    issue 54868), so on a GPU node such a runner's world would see every card and crowd
    onto cuda:0 outside Ray's accounting. Runners given a GPU keep `auto`: Ray sets
    CUDA_VISIBLE_DEVICES to their share, and the world picks cuda.
    """
    if s.num_env_runners > 0 and s.num_gpus_per_env_runner == 0 and env_config.get("device") == "auto":
        return {**env_config, "device": "cpu"}
    return env_config


def build_ppo_config(
    env_id: str,
    env_creator: Callable[[Dict[str, Any]], Any],
    env_config: Dict[str, Any],
    settings: AgentSettings,
) -> PPOConfig:
    """Register `env_creator` under `env_id` and build the PPO config for it.

    `env_config["factor_layout"]` (list of {"name", "m", "n", "rank"}) is passed to the
    module so its heads match the env's action packing.
    """
    if "factor_layout" not in env_config:
        raise ValueError("env_config needs 'factor_layout' to shape the policy heads.")
    s = cpu_fallback(settings)
    num_learners = max(1, s.num_learners)
    if s.train_batch_size % num_learners:
        raise UserError(
            f"train_batch_size {s.train_batch_size} is not divisible by "
            f"num_learners {s.num_learners}."
        )
    batch_per_learner = s.train_batch_size // num_learners
    if s.minibatch_size > batch_per_learner:
        raise UserError(
            f"minibatch_size {s.minibatch_size} exceeds the per-learner batch "
            f"{batch_per_learner}."
        )

    register_env(env_id, env_creator)
    env_config = runner_env_config(env_config, s)
    model_config = {
        "factor_layout": [dict(layer) for layer in env_config["factor_layout"]],
        "hidden": list(s.hidden),
        "initial_log_std": s.initial_log_std,
    }
    module_class = MODULES.get(s.module)
    if module_class is None:
        raise UserError(f"unknown agent module '{s.module}': choose {' or '.join(MODULES)}")
    if s.module == "rowwise":
        if not env_config.get("obs_layout"):
            raise UserError("the rowwise module needs the world's row-wise observation: configure a generalist: section")
        model_config["obs_layout"] = dict(env_config["obs_layout"])
        model_config["rank"] = int(env_config["factor_layout"][0]["rank"])
        model_config["bounded_means"] = True
    if s.algorithm not in ALGORITHMS:
        raise UserError(f"unknown agent algorithm '{s.algorithm}': choose {' or '.join(ALGORITHMS)}")
    es = s.algorithm == "es"
    if es and s.module != "factorized":
        raise UserError("agent.algorithm es searches one request's edit: a generalist (row-wise policy) trains with ppo")
    if es and (s.es_population < 2 or s.es_population % 2):
        raise UserError(f"agent.es_population must be an even number >= 2 (antithetic pairs), got {s.es_population}")
    return (
        PPOConfig(algo_class=EditES if es else None)
        .environment(env_id, env_config=env_config)
        .env_runners(
            num_env_runners=s.num_env_runners,
            num_envs_per_env_runner=s.num_envs_per_env_runner,
            gym_env_vectorize_mode="vector_entry_point" if s.vectorize == "batched" else "sync",
            num_gpus_per_env_runner=s.num_gpus_per_env_runner,
            # "auto" = train batch / (runners * envs per runner): each iteration
            # samples exactly train_batch_size steps, whatever the runner count.
            rollout_fragment_length="auto",
        )
        .learners(
            num_learners=s.num_learners,
            num_gpus_per_learner=s.num_gpus_per_learner,
            # PPO with a dual-clipped surrogate: finite for actions of thousands of dims.
            learner_class=EditPPOLearner,
            # What the learner (and EditES) read: ES's settings, or how PPO's ratio is formed.
            learner_config_dict={"es": {
                "population": s.es_population, "sigma": s.es_sigma, "seed": s.seed, "folds": s.es_folds,
                "action_dims": sum(factor_sizes(env_config["factor_layout"]))}} if es else {"ppo_logp": s.ppo_logp},
        )
        .training(
            # ES steps the action offsets with the learner's optimiser at its own rate.
            lr=s.es_lr if es else s.lr,
            gamma=s.gamma,
            lambda_=s.lambda_,
            clip_param=s.clip_param,
            vf_clip_param=s.vf_clip_param,
            entropy_coeff=s.entropy_coeff,
            use_kl_loss=s.use_kl_loss,
            train_batch_size_per_learner=batch_per_learner,
            minibatch_size=s.minibatch_size,
            num_epochs=s.num_epochs,
        )
        .rl_module(
            rl_module_spec=RLModuleSpec(
                module_class=module_class, model_config=model_config
            )
        )
        # No utilisation monitor (RLlib's default samples CPU/GPU use in a thread every 0.7 s,
        # for result keys nothing here reads): its join made every algo.stop() wait up to 0.7 s.
        .debugging(seed=s.seed, log_sys_usage=False)
        # Restart lost EnvRunner actors (preempted node, OOM). Sub-env restarts stay
        # off: RLlib would recreate an env whose step() always raises forever,
        # turning a bug in a world into a silent endless loop.
        .fault_tolerance(restart_failed_env_runners=s.restart_failed_env_runners)
    )
