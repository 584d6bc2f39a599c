"""Tests of the RLlib agent layer against a tiny stand-in editing env.

The stand-in mimics a world's interface: a flat Box(-1, 1) action packing U then V of
one "layer" (m=3, n=4, rank 1), V mapped to [0, 1] by the env, D = U V^T / r, and a
dense reward -||D - target||^2 for a target reachable with V >= 0. Episodes are 3 steps.
"""

import logging
import os
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import ray  # noqa: E402
import ray.cloudpickle  # noqa: E402
from ray.rllib.core.columns import Columns  # noqa: E402
from ray.rllib.core.rl_module.rl_module import RLModuleSpec  # noqa: E402

from rledit_ray.agent import (  # noqa: E402
    AgentSettings,
    FactorizedPPOModule,
    build_ppo_config,
    cpu_fallback,
    deterministic_action,
    load_module,
    module_from_algo,
)

LAYOUT = [{"name": "w", "m": 3, "n": 4, "rank": 1}]
ACTION_DIM = 7
OBS_DIM = 3


class ToyEditEnv(gym.Env):
    """Edit a 3x4 'weight' towards a fixed rank-1 target within 3 steps."""

    T = 3

    def __init__(self, config=None):
        layer = (config or {}).get("factor_layout", LAYOUT)[0]
        self.m, self.n, self.r = layer["m"], layer["n"], layer["rank"]
        dim = (self.m + self.n) * self.r
        self.action_space = gym.spaces.Box(-1.0, 1.0, (dim,), np.float32)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float32)
        u = np.array([[0.8], [-0.6], [0.5]])
        v = np.array([[1.0], [0.5], [0.2], [0.9]])  # >= 0, as the env's V is
        self.target = u @ v.T

    def decode(self, action):
        a = np.clip(action, -1.0, 1.0)
        u = a[: self.m * self.r].reshape(self.m, self.r)
        v = (a[self.m * self.r :].reshape(self.n, self.r) + 1.0) / 2.0
        return u @ v.T / self.r

    def _obs(self):
        gap = np.linalg.norm(self.delta - self.target)
        return np.array([self.t / self.T, self.delta.mean(), gap], np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.delta = 0, np.zeros((self.m, self.n))
        return self._obs(), {}

    def step(self, action):
        self.delta = self.decode(action)
        self.t += 1
        reward = -float(np.sum((self.delta - self.target) ** 2))
        return self._obs(), reward, False, self.t >= self.T, {}


def episode_return(env, policy):
    obs, _ = env.reset(seed=0)
    total, done = 0.0, False
    while not done:
        obs, reward, terminated, truncated, _ = env.step(policy(obs))
        total += reward
        done = terminated or truncated
    return total


def make_module(**model_config):
    env = ToyEditEnv()
    spec = RLModuleSpec(
        module_class=FactorizedPPOModule,
        observation_space=env.observation_space,
        action_space=env.action_space,
        model_config={"factor_layout": LAYOUT, **model_config},
    )
    return spec.build()


@pytest.fixture(scope="module")
def ray_cluster(ray_local):
    """The session's Ray, with this file's ToyEditEnv shipped by value (remote EnvRunners
    cannot import a test file)."""
    threads = torch.get_num_threads()
    # The learner runs in this process: on 2 shared cores, torch's intra-op threads
    # contend with each other and with the env; one thread ran PPO updates ~15x faster.
    torch.set_num_threads(1)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield ray_local
    ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    torch.set_num_threads(threads)


def test_module_shapes_and_initial_policy():
    module = make_module(hidden=[32, 32], initial_log_std=-0.5)
    obs = torch.randn(5, OBS_DIM)

    out = module.forward_exploration({Columns.OBS: obs})
    logits = out[Columns.ACTION_DIST_INPUTS]
    assert logits.shape == (5, 2 * ACTION_DIM)
    mean, log_std = logits.chunk(2, dim=-1)
    assert mean.abs().max() < 0.1  # ~ the zero action: no edit
    assert torch.allclose(log_std, torch.full_like(log_std, -0.5))

    values = module.compute_values({Columns.OBS: obs})
    assert values.shape == (5,)

    factors = module.factor_means(obs)["w"]
    assert factors["U"].shape == (5, 3, 1) and factors["V"].shape == (5, 4, 1)
    packed = torch.cat([factors["U"].flatten(1), factors["V"].flatten(1)], dim=-1)
    assert torch.allclose(packed, mean)  # heads are concatenated in env order


def test_inference_only_module_drops_value_net():
    env = ToyEditEnv()
    module = RLModuleSpec(
        module_class=FactorizedPPOModule,
        observation_space=env.observation_space,
        action_space=env.action_space,
        inference_only=True,
        model_config={"factor_layout": LAYOUT},
    ).build()
    assert not hasattr(module, "value_net")
    assert deterministic_action(module, np.zeros(OBS_DIM)).shape == (ACTION_DIM,)


def test_layout_must_match_action_space():
    with pytest.raises(ValueError, match="packs"):
        env = ToyEditEnv()
        FactorizedPPOModule(
            observation_space=env.observation_space,
            action_space=env.action_space,
            model_config={"factor_layout": [{"name": "w", "m": 3, "n": 5, "rank": 1}]},
        )


def test_gpu_guard_falls_back_to_cpu(monkeypatch, caplog):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    asked = AgentSettings(num_gpus_per_env_runner=0.5, num_gpus_per_learner=1.0)
    with caplog.at_level(logging.WARNING, logger="rledit_ray.agent.ppo"):
        settings = cpu_fallback(asked)
    assert settings.num_gpus_per_env_runner == 0 and settings.num_gpus_per_learner == 0
    assert asked.num_gpus_per_learner == 1.0  # the caller's settings are not mutated
    assert len([r for r in caplog.records if "CPU" in r.getMessage()]) == 1


def test_gpu_request_on_cpu_builds_and_trains(ray_cluster, monkeypatch):
    # Without the guard a remote EnvRunner asking for half a GPU waits forever.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    settings = AgentSettings(
        num_env_runners=1,
        num_gpus_per_env_runner=0.5,
        num_gpus_per_learner=1.0,
        train_batch_size=60,
        minibatch_size=30,
        num_epochs=1,
        vectorize="sync",  # the toy env is one env, not a batch of worlds
    )
    config = build_ppo_config(
        "toy-edit-gpu", ToyEditEnv, {"factor_layout": LAYOUT}, settings
    )
    assert config.num_gpus_per_env_runner == 0 and config.num_gpus_per_learner == 0
    algo = config.build_algo()
    try:
        result = algo.train()
        assert result["env_runners"]["num_env_steps_sampled"] >= 60
    finally:
        algo.stop()


def test_ppo_learns_and_checkpoint_round_trips(ray_cluster, tmp_path):
    settings = AgentSettings(train_batch_size=300, minibatch_size=100, seed=0, vectorize="sync")
    config = build_ppo_config(
        "toy-edit", ToyEditEnv, {"factor_layout": LAYOUT}, settings
    )
    algo = config.build_algo()
    try:
        returns = [
            algo.train()["env_runners"]["episode_return_mean"] for _ in range(8)
        ]
        # Measured: ~-10.5 -> ~-5.2 over 8 iterations for seeds 0-3.
        assert returns[-1] > returns[0] + 2.5, returns

        live = module_from_algo(algo)
        algo.save_to_path(str(tmp_path / "ckpt"))
    finally:
        algo.stop()

    loaded = load_module(tmp_path / "ckpt")
    obs = np.random.default_rng(0).normal(size=(4, OBS_DIM)).astype(np.float32)
    np.testing.assert_allclose(
        deterministic_action(loaded, obs), deterministic_action(live, obs), atol=1e-6
    )

    # The mean action must now beat not editing at all.
    env = ToyEditEnv()
    learned = episode_return(env, lambda o: deterministic_action(loaded, o))
    no_edit = episode_return(env, lambda o: np.zeros(ACTION_DIM, np.float32))
    assert learned > no_edit + 1.0, (learned, no_edit)


def test_mode_dependent_layers_are_refused_because_train_skips_submodules(monkeypatch):
    """FactorizedPPOModule.train() flips only its own flag (RLlib toggles it every step);
    a layer that behaves differently in training mode must not slip in unnoticed."""
    import rledit_ray.agent.nets as nets

    monkeypatch.setattr(nets, "mlp", lambda in_dim, hidden: torch.nn.Sequential(
        torch.nn.Linear(in_dim, hidden[-1]), torch.nn.Dropout(0.1)))
    with pytest.raises(TypeError, match="Dropout"):
        FactorizedPPOModule(
            observation_space=gym.spaces.Box(-1, 1, (4,), np.float32),
            action_space=gym.spaces.Box(-1, 1, (5,), np.float32),
            model_config={"factor_layout": [{"name": "w", "m": 2, "n": 3, "rank": 1}]},
        )


def test_dual_clip_surrogate_matches_ppo_inside_and_stays_finite_outside():
    from rledit_ray.agent.learner import dual_clip_surrogate

    log_ratio = torch.tensor([0.1, 1.0, 5.0, 500.0, 500.0, -500.0], requires_grad=True)
    advantages = torch.tensor([1.0, -1.0, -1.0, -1.0, 1.0, 1.0])
    surrogate = dual_clip_surrogate(log_ratio, torch.zeros(6), advantages, clip=0.3)
    expected = [  # hand-computed: min(rA, clip(r)A), bounded below by 3A for A < 0
        min(np.exp(0.1), 1.3),
        -np.e,  # r = 2.72 < 3: plain PPO's unclipped term
        -3.0,  # r = 148: the dual clip, where plain PPO gives -148
        -3.0,  # r = e^500: plain PPO gives -inf and nan gradients
        1.3,
        0.0,
    ]
    np.testing.assert_allclose(surrogate.detach().numpy(), expected, atol=1e-6)
    surrogate.sum().backward()
    assert torch.isfinite(log_ratio.grad).all()
    # Beyond either clip the sample no longer pushes the policy.
    np.testing.assert_allclose(log_ratio.grad[2:].numpy(), 0.0, atol=1e-6)
    assert log_ratio.grad[1] == pytest.approx(-np.e)


def test_value_head_starts_near_zero():
    """PPO clamps the value loss at vf_clip_param (10); a critic starting at +-16 on
    returns of ~1 got no gradient from any sample and never learned."""
    module = make_module()
    obs = torch.as_tensor(np.random.default_rng(0).normal(0, 30, size=(256, OBS_DIM)), dtype=torch.float32)
    values = module.compute_values({Columns.OBS: obs})
    assert values.abs().max() < 0.5


def test_the_copied_ppo_loss_still_matches_the_installed_rllib():
    """EditPPOLearner's loss is a copy of RLlib's with one line changed: when RLlib's own
    loss changes, this fails, so the copy is re-read instead of silently drifting."""
    import hashlib
    import inspect

    from ray.rllib.algorithms.ppo.torch.ppo_torch_learner import PPOTorchLearner

    from rledit_ray.agent.learner import RLLIB_LOSS_FINGERPRINT

    source = inspect.getsource(PPOTorchLearner.compute_loss_for_module)
    assert hashlib.sha256(source.encode()).hexdigest()[:16] == RLLIB_LOSS_FINGERPRINT, (
        f"ray {ray.__version__} changed PPOTorchLearner.compute_loss_for_module: carry its changes "
        "into rledit_ray/agent/learner.py and update RLLIB_LOSS_FINGERPRINT")
