"""WorldBatch: many worlds as one vector env must behave exactly like the worlds one by one."""
import numpy as np
import pytest

from rledit_ray.build import build_env, build_world
from rledit_ray.config import build_config
from rledit_ray.worlds import WorldBatch

DIGITS = {"dataset": "digits", "forget_classes": [3], "samples": {"per_set": 32}, "episode_length": 3}


def _pair(n, **changes):
    cfg = build_config({**DIGITS, **changes})
    return WorldBatch(lambda: build_world(cfg), n), [build_world(cfg) for _ in range(n)]


@pytest.mark.parametrize("world, edit, stacked", [
    ("mask", ["fc2.weight", "fc2.bias"], "fc2"),    # one Linear opening the suffix: one stacked matmul
    ("shift", ["fc1.weight"], "fc1"),               # bias not edited: the module's own bias is used
    ("mask", ["conv1.weight"], None),               # a conv: one suffix call per world
    ("shift", ["fc1.bias", "fc2.weight"], None),    # two layers: one suffix call per world
])
def test_batch_steps_like_separate_worlds(world, edit, stacked):
    batch, worlds = _pair(3, world=world, edit=edit)
    assert batch.batched_layer == stacked
    rng = np.random.default_rng(0)
    obs, _ = batch.reset(seed=0)
    np.testing.assert_allclose(obs, np.stack([w.reset(seed=0)[0] for w in worlds]))
    for t in range(3):
        actions = rng.uniform(-1, 1, batch.action_space.shape).astype(np.float32)
        obs, rewards, terminated, truncated, infos = batch.step(actions)
        alone = [w.step(a) for w, a in zip(worlds, actions)]
        np.testing.assert_allclose(obs, np.stack([o for o, *_ in alone]), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(rewards, [r for _, r, *_ in alone], rtol=1e-4, atol=1e-5)
        assert list(terminated) == [done for _, _, done, *_ in alone] == [t == 2] * 3
        assert batch.observation_space.contains(obs)
        assert set(infos) >= {"utility", "objective"} and len(infos["utility"]) == 3


def test_a_finished_episode_restarts_on_the_next_step_ignoring_its_action():
    batch, worlds = _pair(2)
    batch.reset(seed=0)
    ones = np.ones(batch.action_space.shape, np.float32)
    for _ in range(3):
        *_, terminated, _, _ = batch.step(ones)
    assert terminated.all()
    obs, rewards, terminated, truncated, _ = batch.step(ones)  # gymnasium's next-step autoreset
    np.testing.assert_allclose(obs, np.stack([w.reset()[0] for w in worlds]))
    assert not rewards.any() and not terminated.any() and not truncated.any()
    assert all(w.t == 0 for w in batch.worlds)


def test_env_creator_returns_a_batch_when_rllib_asks_for_num_envs():
    config = {**DIGITS, "factor_layout": []}  # RLlib's env_config carries the agent's keys too
    assert isinstance(build_env({**config, "num_envs": 4}), WorldBatch)
    assert build_env({**config, "num_envs": 4}).num_envs == 4
    assert not isinstance(build_env(config), WorldBatch)
