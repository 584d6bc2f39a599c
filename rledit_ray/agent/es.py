"""Evolution strategies for wide edits, as an RLlib Algorithm of the new API stack (ray 2.60).

How to run:
    rledit train --layer fc1 --algorithm es          # MNIST class 7, the hidden layer
    agent: {algorithm: es}                           # the same in YAML
What to expect (docs/deep-edits.md, `python scripts/reproduce.py optimisers`): fc1 (1,697
action dims) forgotten in both worlds in 8-20 iterations of 32 episodes (8-13 s), where PPO
stays far from the target; fc2 in fewer env steps than PPO.

Why: PPO's probability ratio is a product over every action dim; at thousands of dims one
minibatch step moves it far outside the trust region (clip fraction 0.6-0.9), and the hidden
layer never learns (docs/design.md, "Measured findings"). ES needs no ratio and no critic:
it scores whole episodes, so its cost does not grow with the action's width, and its
episodes are independent, which is what EnvRunners are for.

What is searched: the offsets of the policy's mean action (the biases of its factor heads,
agent/nets.py), i.e. the edit the deterministic policy applies at every step. The rest of the
network keeps its initial, near-zero weights, so the policy is the open-loop edit of one
request: `rledit edit`, checkpoints and resume serve and restore it like any PPO policy. A
generalist needs the observation and stays with PPO (refused in `build_ppo_config`).

One iteration (`EditES.training_step`), antithetic ES with centred ranks (Salimans et al.
2017, arXiv 1703.03864):
1. the driver draws P/2 Gaussian directions e (seeded by the run seed and the iteration);
2. the EnvRunners share the P candidates theta +- sigma e: each runs one deterministic episode
   per candidate, its sub-envs side by side (one batched forward pass per step);
3. returns -> centred ranks u in [-0.5, 0.5]; gradient g = sum (u+ - u-) e / (P sigma);
4. the Learner's own optimiser (Adam, lr = es_lr) steps theta along g (so its state travels
   in checkpoints like PPO's), and the new weights go to the EnvRunners.
"""
from __future__ import annotations

from typing import List

import numpy as np
import torch
from ray.rllib.algorithms.ppo import PPO
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.utils.metrics import (
    ENV_RUNNER_RESULTS,
    EPISODE_RETURN_MEAN,
    LEARNER_RESULTS,
    NUM_ENV_STEPS_SAMPLED,
    NUM_ENV_STEPS_SAMPLED_LIFETIME,
)

from rledit_ray.agent.nets import FactorizedNet

FITNESS_STD_KEY = "es_fitness_std"  # spread of the population's returns: ES's signal
STEP_KEY = "es_step_rms"  # root-mean-square change of theta per iteration (PPO's analogue: clip fraction)


def offset_parameters(module) -> List[torch.nn.Parameter]:
    """The parameters ES searches, in the action's packing order: per edited layer, the U
    head's bias (m*r values), then the V head's (n*r)."""
    if not isinstance(module, FactorizedNet):
        raise TypeError(f"ES searches a factorised policy's action offsets, not a {type(module).__name__}")
    return [p for head in module.heads for p in (head.u.bias, head.v.bias)]


def centred_ranks(returns: np.ndarray) -> np.ndarray:
    """Ranks scaled to [-0.5, 0.5]: invariant to the returns' scale, robust to outliers."""
    ranks = np.empty(len(returns))
    ranks[np.argsort(returns, kind="stable")] = np.arange(len(returns))
    return ranks / max(len(returns) - 1, 1) - 0.5


def es_gradient(directions: np.ndarray, returns_plus: np.ndarray, returns_minus: np.ndarray,
                sigma: float) -> np.ndarray:
    """The antithetic estimate of d E[return] / d theta from ranked returns."""
    u = centred_ranks(np.concatenate([returns_plus, returns_minus]))
    half = len(returns_plus)
    weights = u[:half] - u[half:]
    return weights @ directions / (2 * half * sigma)


def use_reward_fold(env, k: int) -> None:
    """Have every world of an EnvRunner's vector env (a WorldBatch, or gymnasium's sync
    vector env of wrapped worlds) score its next episodes on reward sample set k."""
    vec = env.unwrapped
    if hasattr(vec, "use_reward_fold"):  # a WorldBatch tells its own worlds
        vec.use_reward_fold(k)
        return
    for sub in vec.envs:
        sub.unwrapped.use_reward_fold(k)


def evaluate_offsets(runner, offsets: np.ndarray, fold: int = 0) -> tuple[list[float], int]:
    """One deterministic episode per row of `offsets` (added to the runner's mean action), its
    sub-envs side by side, on reward sample set `fold`; returns (episode returns, env steps)."""
    env, module = runner.env, runner.module
    use_reward_fold(env, fold)
    n = env.num_envs
    device = next(module.parameters()).device
    returns, steps = [], 0
    for start in range(0, len(offsets), n):
        chunk = offsets[start:start + n]
        padded = np.zeros((n, offsets.shape[1]), np.float32)  # idle sub-envs do "no edit"
        padded[:len(chunk)] = chunk
        obs, _ = env.reset()
        total, done = np.zeros(n), np.zeros(n, bool)
        while not done.all():
            with torch.no_grad():
                mean = module.action_mean(torch.as_tensor(obs, device=device)).cpu().numpy()
            obs, rewards, terminated, truncated, _ = env.step(np.clip(mean + padded, -1.0, 1.0))
            total += np.where(done, 0.0, rewards)
            steps += int((~done[:len(chunk)]).sum())
            done |= terminated | truncated
        returns += total[:len(chunk)].tolist()
    return returns, steps


def apply_es_step(learner, gradient: np.ndarray) -> float:
    """Step the learner's module up `gradient` with its own optimiser; returns the RMS change."""
    module = learner.module[DEFAULT_MODULE_ID]
    params = offset_parameters(module)
    before = torch.cat([p.detach().flatten() for p in params]).clone()
    for p in module.parameters():
        p.grad = None  # Adam skips parameters without a gradient: only theta moves
    g = torch.as_tensor(gradient, dtype=torch.float32)
    for p, part in zip(params, g.split([p.numel() for p in params])):
        p.grad = -part.reshape(p.shape).to(p.device)  # optimisers minimise: ascend the return
    for _, optimizer in learner.get_optimizers_for_module(DEFAULT_MODULE_ID):
        optimizer.step()
    after = torch.cat([p.detach().flatten() for p in params])
    return float((after - before).pow(2).mean().sqrt())


class EditES(PPO):
    """PPO's config, learner, module and checkpoints; `training_step` is ES (module docstring).
    The ES settings travel in the config's `learner_config_dict`."""

    def training_step(self) -> None:
        es = self.config.learner_config_dict["es"]
        half = es["population"] // 2
        rng = np.random.default_rng([int(es["seed"]), self.iteration])
        directions = rng.standard_normal((half, int(es["action_dims"]))).astype(np.float32)
        # samples.folds: every candidate of an iteration on the same fresh reward set, so ranks
        # compare edits, not samples; the sets take turns, so no edit fits one set.
        returns, steps = self._evaluate(np.concatenate([directions, -directions]) * es["sigma"],
                                        self.iteration % es["folds"])
        gradient = es_gradient(directions, returns[:half], returns[half:], es["sigma"])
        step_rms = self.learner_group.foreach_learner(apply_es_step, gradient=gradient)
        self.env_runner_group.sync_weights(from_worker_or_learner_group=self.learner_group, inference_only=True)

        self.metrics.log_value((ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED), steps, reduce="sum")
        self.metrics.log_value((ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME), steps, reduce="lifetime_sum")
        self.metrics.log_value((ENV_RUNNER_RESULTS, EPISODE_RETURN_MEAN), float(returns.mean()), window=1)
        self.metrics.log_value((LEARNER_RESULTS, DEFAULT_MODULE_ID, FITNESS_STD_KEY), float(returns.std()), window=1)
        self.metrics.log_value((LEARNER_RESULTS, DEFAULT_MODULE_ID, STEP_KEY),
                               float(next(iter(step_rms)).get()), window=1)

    def _evaluate(self, candidates: np.ndarray, fold: int) -> tuple[np.ndarray, int]:
        """Every candidate's return (in order) and the env steps they took: each healthy remote
        EnvRunner scores an equal share; without remote runners the driver's own scores all."""
        group = self.env_runner_group
        remote = group.healthy_env_runner_ids() if group.num_remote_env_runners() else []
        if not remote:
            returns, steps = evaluate_offsets(group.local_env_runner, candidates, fold)
            return np.array(returns), steps
        bounds = np.linspace(0, len(candidates), len(remote) + 1).astype(int)
        # Each call carries its own share only (a closure over all candidates would ship all).
        calls = [lambda runner, a=a, share=candidates[a:b]: (a, *evaluate_offsets(runner, share, fold))
                 for a, b in zip(bounds[:-1], bounds[1:])]
        # Results come back in the order the runners finish: each carries where its share starts.
        results = sorted(group.foreach_env_runner(calls, local_env_runner=False, remote_worker_ids=remote))
        if sum(len(r) for _, r, _ in results) != len(candidates):
            # ES needs every candidate's return (antithetic pairs); RLlib restarts a lost runner
            # only after the iteration, so this one cannot be completed.
            raise RuntimeError("an EnvRunner was lost during the ES evaluation: the run stops here; "
                               "`rledit train --resume RUN_DIR` continues from its last checkpoint")
        return np.array([x for _, r, _ in results for x in r]), sum(s for _, _, s in results)
