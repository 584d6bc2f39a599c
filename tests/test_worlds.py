"""Worlds without Ray: gymnasium contract, edit semantics, reward arithmetic, caching."""
import copy
from collections import OrderedDict

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from torch import nn

import rledit_ray  # noqa: F401  (registers the env ids)
from rledit_ray.build import build_world
from rledit_ray.data import unlearning_splits
from rledit_ray.errors import UserError
from rledit_ray.targets import full_model_predict
from rledit_ray.tasks import UnlearningTask
from rledit_ray.worlds import MaskWorld, ShiftWorld, WorldSettings
from rledit_ray.worlds.rollout import random_policy, run_episode

WORLDS = {"mask": MaskWorld, "shift": ShiftWorld}


@pytest.fixture(scope="module")
def digits(digits_target):
    ds, model = digits_target
    model = copy.deepcopy(model)
    # target margin -2: the hand-made logits below are built around it
    task = UnlearningTask(unlearning_splits(ds, [3]), samples_per_set=64, seed=0, target_margin=-2.0)
    return model, task


def make(world, digits, edit=("fc2.weight", "fc2.bias"), **settings):
    model, task = digits
    import copy

    return WORLDS[world](copy.deepcopy(model), list(edit), task, WorldSettings(**settings))


@pytest.mark.parametrize("world", ["mask", "shift"])
def test_passes_gymnasium_env_checker(world, digits):
    check_env(make(world, digits), skip_render_check=True)


@pytest.mark.parametrize("world_id", ["rledit/MaskWorld-v0", "rledit/ShiftWorld-v0"])
def test_registered_ids_make_worlds_from_config(world_id):
    env = gym.make(world_id, dataset="digits", forget_classes=[3], samples={"per_set": 32})
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)


@pytest.mark.parametrize("world", ["mask", "shift"])
def test_zero_action_leaves_network_unchanged(world, digits):
    env = make(world, digits)
    env.reset(seed=0)
    before = {k: v.clone() for k, v in env.model.state_dict().items()}
    for _ in range(3):
        _, reward, *_ = env.step(np.zeros(env.action_space.shape, np.float32))
        assert reward == 0.0
    assert all(torch.equal(before[k], v) for k, v in env.model.state_dict().items())


@pytest.mark.parametrize("rank", [1, 3])
def test_action_decodes_to_low_rank_deltas(rank, digits):
    env = make("shift", digits, edit=("fc1.weight", "fc2.weight", "fc2.bias"), rank=rank)
    # fc1: 64 x 256, fc2 with bias: 10 x 65
    assert env.action_space.shape == (rank * (64 + 256) + rank * (10 + 65),)
    action = torch.as_tensor(env.action_space.sample())
    deltas = env.decode(action)
    assert [tuple(d.shape) for d in deltas] == [(64, 256), (10, 65)]
    assert all(torch.linalg.matrix_rank(d) <= rank for d in deltas)
    # V lives in [0, 1]: a positive U row gives a non-negative delta row
    ones = torch.ones(env.action_space.shape)
    assert all((d >= 0).all() for d in env.decode(ones))


def test_mask_stays_in_bounds_and_weights_follow_it(digits):
    env = make("mask", digits, mask_bounds=(0.2, 1.3), step_size=0.9, episode_length=20)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(20):
        env.step(rng.uniform(-1, 1, env.action_space.shape).astype(np.float32))
    mask = env.masks[0]
    assert mask.min() >= 0.2 - 1e-6 and mask.max() <= 1.3 + 1e-6
    assert mask.min() < 0.5 and mask.max() > 1.1  # the bounds were actually reached
    assert torch.allclose(env.layers[0].read(), env.original[0] * mask)


def test_shift_adds_scaled_delta(digits):
    env = make("shift", digits, step_size=0.25)
    env.reset(seed=0)
    action = np.random.default_rng(1).uniform(-1, 1, env.action_space.shape).astype(np.float32)
    env.step(action)
    expected = env.original[0] + 0.25 * env.scales[0] * env.decode(torch.as_tensor(action))[0]
    assert torch.allclose(env.layers[0].read(), expected, atol=1e-6)


@pytest.mark.parametrize("mode", ["improvement", "level"])
def test_reward_arithmetic(mode, digits):
    env = make("mask", digits, reward_mode=mode, utility_coef=3.0, objective_coef=2.0, episode_length=4)
    _, info0 = env.reset(seed=0)
    score0 = 3.0 * info0["utility"] + 2.0 * info0["objective"]
    rng = np.random.default_rng(2)
    rewards, scores, done = [], [], False
    while not done:
        _, r, done, truncated, info = env.step(rng.uniform(-1, 1, env.action_space.shape).astype(np.float32))
        rewards.append(r)
        scores.append(3.0 * info["utility"] + 2.0 * info["objective"])
    assert len(rewards) == 4 and not truncated
    if mode == "improvement":
        assert sum(rewards) == pytest.approx(scores[-1] - score0, abs=1e-5)
    else:
        assert rewards == pytest.approx([s - score0 for s in scores], abs=1e-5)


def test_unlearning_terms_on_hand_made_logits(digits):
    _, task = digits
    n_f = task.n_forget
    y = task.reward_y
    ref = torch.zeros(len(y), 10)
    ref[torch.arange(len(y)), y] = 4.0  # every margin is +4, p(true) = e^4 / (e^4 + 9)
    edited = ref.clone()
    edited[:n_f] = 0.0
    edited[torch.arange(n_f), (y[:n_f] + 1) % 10] = 2.0  # forget margins now -2 = the target
    terms = task.reward_terms(edited, ref)
    assert terms["objective"] == pytest.approx(1.0)
    assert terms["forget_acc_reward"] == 0.0 and terms["retain_acc_reward"] == 1.0
    assert terms["utility"] == pytest.approx(np.exp(4) / (np.exp(4) + 9), rel=1e-5)
    half = ref.clone()
    half[:n_f] = 0.0
    half[torch.arange(n_f), y[:n_f]] = 1.0  # margin 4 -> 1: half way to -2
    assert task.reward_terms(half, ref)["objective"] == pytest.approx(0.5)


@pytest.mark.parametrize("edit", [("fc2.weight",), ("fc1",), ("conv1.weight",)])
def test_cached_suffix_equals_full_forward_pass(edit, digits):
    env = make("shift", digits, edit=edit)
    run_episode(env, random_policy(env, seed=3))
    full = full_model_predict(env.model)
    sets = env.task.evaluation_sets(("validation", "test"))
    for name, labeled in sets.items():
        assert torch.equal(env.predict(name, labeled).cpu(), full(name, labeled))
    with torch.no_grad():
        cached = env.split.suffix(env.reward_h)
        direct = env.model(env.task.reward_x)
    assert torch.allclose(cached, direct, atol=1e-5)


def test_big_layer_is_observed_through_a_fixed_size_sketch(digits):
    env = make("mask", digits, edit=("fc1.weight",), obs_budget=512)  # 64 x 256 > 512
    obs, _ = env.reset(seed=0)
    assert obs.shape == env.observation_space.shape
    assert env.observation_space.shape[0] <= 512 + 5
    check_env(env, skip_render_check=True)


def test_any_module_can_be_a_target(digits):
    class TwoPath(nn.Module):  # not a Sequential: split by recording (targets/split.py)
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(OrderedDict(flat=nn.Flatten(), hidden=nn.Linear(64, 32)))
            self.head = nn.Linear(32, 10)

        def forward(self, x):
            return self.head(torch.relu(self.body(x)))

    _, task = digits
    env = ShiftWorld(TwoPath(), ["head.weight", "body.hidden.bias"], task, WorldSettings())
    assert [layer.module_name for layer in env.layers] == ["body.hidden", "head"]
    check_env(env, skip_render_check=True)


@pytest.mark.parametrize("edit, message", [
    (["fc9.weight"], "unknown layer or parameter 'fc9.weight'"),
    (["relu1"], "unknown layer or parameter 'relu1'"),
    ([], "no parameters to edit"),
])
def test_bad_layer_names_are_refused(edit, message, digits):
    with pytest.raises(UserError, match=message):
        make("mask", digits, edit=edit)


@pytest.mark.parametrize("settings, message", [
    ({"rank": 0}, "rank must be >= 1"),
    ({"episode_length": 0}, "episode_length must be >= 1"),
    ({"mask_bounds": (0.5, 0.9)}, "mask_bounds must contain 1"),
    ({"reward_mode": "sparse"}, "unknown reward mode"),
])
def test_bad_world_settings_are_refused(settings, message, digits):
    with pytest.raises(UserError, match=message):
        make("mask", digits, **settings)


def test_sub_envs_share_one_prefix_cache():
    a = build_world({"dataset": "digits", "edit": ["fc1.weight"]})
    b = build_world({"dataset": "digits", "edit": ["fc1.weight"]})
    assert a.reward_h is b.reward_h  # one copy of the frozen prefix's activations
    assert a.model is not b.model  # but each env edits its own weights


def _uv(world, u_value, v_value=1.0):
    """An action whose factors are U = u_value everywhere and V = v_value (in [0, 1])."""
    layer = world.layers[0]
    return np.concatenate([np.full(layer.rows, u_value), np.full(layer.cols, 2 * v_value - 1)]).astype(np.float32)


def test_the_additive_mask_crosses_zero_where_the_multiplicative_one_sticks(digits):
    """A multiplicative mask that reaches 0 stays 0; an additive one passes through it, so a
    mask bounded below 0 can turn a weight's sign (and come back)."""
    settings = {"rank": 1, "step_size": 1.0, "mask_bounds": (-1.0, 1.5)}
    mult = make("mask", digits, **settings)
    add = make("mask", digits, mask_update="additive", **settings)
    for world in (mult, add):
        world.reset(seed=0)
        world.step(_uv(world, -1.0))  # D = -1 everywhere
    assert torch.all(mult.masks[0] == 0.0)  # M * (1 - 1)
    assert torch.all(add.masks[0] == 0.0)  # M - 1
    for world in (mult, add):
        world.step(_uv(world, -1.0))
    assert torch.all(mult.masks[0] == 0.0)  # stuck at 0
    assert torch.all(add.masks[0] == -1.0)  # sign flipped, at the bound
    add.step(_uv(add, 1.0, 0.5))  # D = +0.5
    assert torch.allclose(add.masks[0], torch.full_like(add.masks[0], -0.5))
    assert torch.allclose(add.matrices[0], add.original[0] * -0.5)


# ----------------------------------------------------------------------------- factor bases
@pytest.mark.parametrize("world", ["mask", "shift"])
def test_factor_bases_shrink_the_action_and_keep_the_edit_in_their_span(world, digits):
    env = make(world, digits, edit=("fc1",), rank=2, factor_basis=8)  # fc1 with its bias: 64 x 257
    assert env.action_space.shape == (2 * (8 + 8),)
    assert env.factor_layout == [{"name": "fc1", "m": 8, "n": 8, "rank": 2}]
    (bu, bv, v_start), = env.bases
    # Orthogonal directions, scaled so that unit coefficients give factor entries of order 1.
    torch.testing.assert_close(bu.T @ bu, torch.eye(8) * 64 / 8, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(bv.T @ bv, torch.eye(8) * 257 / 8, atol=1e-3, rtol=1e-4)
    # The left directions are the layer's top singular vectors.
    top = torch.linalg.svd(env.original[0], full_matrices=False).U[:, :8]
    torch.testing.assert_close((top.T @ bu).abs() / (64 / 8) ** 0.5, torch.eye(8), atol=1e-3, rtol=0)
    action = np.random.default_rng(0).uniform(-1, 1, env.action_space.shape).astype(np.float32)
    delta = env.decode(torch.as_tensor(action))[0]  # D = U V^T / r, before the world's clamp
    assert delta.shape == (64, 257) and delta.abs().max() > 0.01
    project_u, project_v = bu @ bu.T / (64 / 8), bv @ bv.T / (257 / 8)
    torch.testing.assert_close(project_u @ delta @ project_v, delta, atol=1e-4, rtol=1e-4)
    assert v_start.abs().max() > 0  # V starts off zero (the saddle), but a zero action is no edit:
    assert torch.equal(env.decode(torch.zeros(env.action_space.shape))[0], torch.zeros(64, 257))
    env.reset(seed=0)
    env.step(action)
    assert not torch.equal(env.layers[0].read(), env.original[0])
    # The same data gives the same bases: a saved policy replays its edit in another process.
    again = make(world, digits, edit=("fc1",), rank=2, factor_basis=8)
    assert all(torch.equal(a, b) for a, b in zip(env.bases[0], again.bases[0]))


@pytest.mark.parametrize("world", ["mask", "shift"])
def test_a_factor_basis_sized_per_side_keeps_a_zero_side_whole(world, digits):
    env = make(world, digits, edit=("fc1",), rank=2, factor_basis=(4, 16))  # fc1 with its bias: 64 x 257
    assert env.action_space.shape == (2 * (4 + 16),)
    assert env.factor_layout == [{"name": "fc1", "m": 4, "n": 16, "rank": 2}]
    (bu, bv, _), = env.bases
    assert bu.shape == (64, 4) and bv.shape == (257, 16)
    whole_out = make(world, digits, edit=("fc1",), rank=2, factor_basis=(0, 16))
    (bu, bv_again, _), = whole_out.bases
    assert torch.equal(bu, torch.eye(64)) and torch.equal(bv_again, bv)  # the input side as before
    assert whole_out.action_space.shape == (2 * (64 + 16),)
    action = np.random.default_rng(0).uniform(-1, 1, whole_out.action_space.shape).astype(np.float32)
    delta = whole_out.decode(torch.as_tensor(action))[0]
    torch.testing.assert_close(delta @ (bv @ bv.T / (257 / 16)), delta, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("settings, message", [
    ({"edit": ("conv1",), "factor_basis": 4}, "factor_basis needs the weight of a Linear layer; 'conv1' is a Conv2d"),
    ({"edit": ("fc2",), "factor_basis": 20}, "factor_basis 20 exceeds what layer 'fc2' .10 x 65. can hold"),
    ({"edit": ("fc2",), "factor_basis": 4, "rank": 5}, "rank 5 exceeds .* factor_basis 4"),
    ({"edit": ("fc2",), "factor_basis": (4, 70)}, r"factor_basis \[4, 70\] exceeds .* at most 10 output and 65 input"),
    ({"edit": ("fc2",), "factor_basis": (0, 3), "rank": 4}, r"rank 4 exceeds .* factor_basis \[0, 3\]"),
    ({"factor_basis": -1}, r"factor_basis must be k >= 0 or \[k_out, k_in\]"),
    ({"factor_basis": (4, 2, 1)}, r"factor_basis must be k >= 0 or \[k_out, k_in\]"),
])
def test_bad_factor_bases_are_refused(settings, message, digits):
    with pytest.raises(UserError, match=message):
        make("shift", digits, **settings)
