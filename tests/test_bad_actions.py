"""Actions a diverging policy or a careless caller sends, and configs nobody wrote on purpose.

A world maps NaN to 0 (the centre of the action box) and +-inf to the bounds, counts such steps
(`nonfinite_actions`), and keeps the weights, the reward and the observation finite; an action
of another shape than the action space's is refused with ValueError (docs/errors.md). The
property tests draw arbitrary actions (NaN, inf, huge, tiny) and arbitrary config values: a
config is either valid or refused with one UserError, never another exception.
"""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from rledit_ray.build import build_world
from rledit_ray.config import build_config, with_overrides
from rledit_ray.errors import UserError
from rledit_ray.worlds import WorldBatch

DIGITS = {"dataset": "digits", "forget_classes": [3], "samples": {"per_set": 32}, "episode_length": 3}


@pytest.fixture(scope="module", params=["mask", "shift"])
def world(request):
    return build_world(build_config({**DIGITS, "world": request.param}))


def finite_state(world, obs, reward) -> bool:
    weights = torch.cat([v.flatten() for v in world.model.state_dict().values()])
    return bool(np.isfinite(obs).all() and np.isfinite(reward) and torch.isfinite(weights).all())


NONFINITE = {
    "all NaN": lambda n: np.full(n, np.nan, np.float32),
    "all +inf": lambda n: np.full(n, np.inf, np.float32),
    "all -inf": lambda n: np.full(n, -np.inf, np.float32),
    "mixed": lambda n: np.resize(np.array([np.nan, np.inf, -np.inf, 0.3], np.float32), n),
    "float64 beyond float32": lambda n: np.full(n, 1e300),
}


@pytest.mark.parametrize("make", NONFINITE.values(), ids=NONFINITE.keys())
def test_a_nonfinite_action_never_reaches_the_weights(make, world):
    world.reset(seed=0)
    counted = world.nonfinite_actions
    for _ in range(world.settings.episode_length):
        obs, reward, *_ = world.step(make(world.action_space.shape[0]))
        assert finite_state(world, obs, reward)
    assert world.nonfinite_actions == counted + world.settings.episode_length


def test_nan_is_the_centre_of_the_box_and_inf_its_bound(world):
    def matrices_after(action):
        world.reset(seed=0)
        world.step(action)
        return [m.clone() for m in world.matrices]

    n = world.action_space.shape[0]
    for odd, same in ((np.nan, 0.0), (np.inf, 1.0), (-np.inf, -1.0)):
        got, want = matrices_after(np.full(n, odd, np.float32)), matrices_after(np.full(n, same, np.float32))
        assert all(torch.equal(a, b) for a, b in zip(got, want)), odd


@pytest.mark.parametrize("shape", ["n+1", "n-1", "(n, 1)", "(1, n)", "()", "(2, n)"])
def test_an_action_of_another_shape_is_refused(shape, world):
    n = world.action_space.shape[0]
    size = {"n+1": (n + 1,), "n-1": (n - 1,), "(n, 1)": (n, 1), "(1, n)": (1, n), "()": (), "(2, n)": (2, n)}[shape]
    world.reset(seed=0)
    before = [m.clone() for m in world.matrices]
    with pytest.raises(ValueError, match=rf"action of shape \({', '.join(map(str, size))},?\) for an action space"):
        world.step(np.zeros(size, np.float32))
    assert all(torch.equal(a, b) for a, b in zip(before, world.matrices))  # nothing was applied


def test_a_world_batch_refuses_misshapen_actions_and_nan_rows():
    cfg = build_config(DIGITS)
    batch = WorldBatch(lambda: build_world(cfg), 2)
    batch.reset(seed=0)
    n = batch.single_action_space.shape[0]
    for bad in ((3, n), (2, n + 1), (n,)):
        with pytest.raises(ValueError, match="actions of shape"):
            batch.step(np.zeros(bad, np.float32))
    actions = np.stack([np.full(n, np.nan, np.float32), np.zeros(n, np.float32)])
    obs, rewards, *_ = batch.step(actions)
    assert np.isfinite(obs).all() and np.isfinite(rewards).all()
    assert [w.nonfinite_actions for w in batch.worlds] == [1, 0]


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_any_float_action_keeps_everything_finite(world, data):
    n = world.action_space.shape[0]
    floats = st.floats(allow_nan=True, allow_infinity=True, width=32)
    world.reset(seed=0)
    for _ in range(world.settings.episode_length):
        obs, reward, *_ = world.step(data.draw(arrays(np.float32, n, elements=floats)))
        assert finite_state(world, obs, reward)


# ----------------------------------------------------------------------------- the config schema
FIELDS = ["seed", "target_seed", "rank", "step_size", "mask_bounds", "episode_length", "obs_budget", "device",
          "world", "task", "dataset", "forget_classes", "edit", "torch_threads", "mask_update", "data_source",
          "reward.utility_coef", "reward.mode", "reward.kl_coef", "samples.per_set", "agent.hidden", "agent.lr",
          "agent.gamma", "agent.num_env_runners", "agent.num_envs_per_env_runner", "agent.clip_param",
          "training.iterations", "target.mean", "target.std", "target.image_size", "generalist.train_classes",
          "bias.temperature", "reward"]
VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70),
              st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=6)


@settings(max_examples=300, deadline=None)
@given(changes=st.dictionaries(st.sampled_from(FIELDS), VALUES, max_size=4))
def test_any_config_is_valid_or_one_user_error(changes):
    try:
        cfg = build_config(with_overrides(DIGITS, changes))
    except UserError as err:
        assert "\n" not in str(err)
        return
    # What was accepted is a config whose numbers a world can use.
    assert cfg.seed >= 0 and cfg.rank >= 1 and np.isfinite(cfg.effective_step_size)
    assert all(np.isfinite(v) for v in cfg.mask_bounds) and all(h >= 1 for h in cfg.agent.hidden)
