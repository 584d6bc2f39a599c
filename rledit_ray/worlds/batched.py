"""WorldBatch: many editing worlds of one config as one gymnasium vector env.

RLlib steps the sub-envs of an EnvRunner together. Stepping N worlds one by one runs N
forward passes of the network suffix, each on the same cached reward activations. When
the edit is a single Linear layer that opens the suffix (the common case: a classifier
head or the first fully connected layer), the N edited matrices are stacked and the N
forward passes become one matrix product of the shared activations with all of them,
followed by one pass of the unedited tail on the stacked outputs: the same numbers (up to
float rounding) for less than N times the cost, because the activations are read once.
ShiftWorld's low-rank edits of a layer whose split scores them in closed form (MiniLM's last
FFN output, targets/pooled_tail.py) are scored together the same way. Any other edit falls
back to one suffix call per world.

Episodes restart the step after they end (gymnasium's "next step" autoreset, which RLlib
expects): that step's action is ignored and the returned observation is the reset one.
"""
from __future__ import annotations

from typing import Callable

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from rledit_ray.worlds.base import EditWorld


class WorldBatch(gym.vector.VectorEnv):
    metadata = {"autoreset_mode": gym.vector.AutoresetMode.NEXT_STEP}

    def __init__(self, make_world: Callable[[], EditWorld], num_envs: int):
        self.worlds = [make_world() for _ in range(num_envs)]
        first = self.worlds[0]
        self.num_envs = num_envs
        self.single_observation_space = first.observation_space
        self.single_action_space = first.action_space
        self.observation_space = gym.vector.utils.batch_space(first.observation_space, num_envs)
        self.action_space = gym.vector.utils.batch_space(first.action_space, num_envs)
        self.batched_layer = _stackable_linear(first)
        self._needs_reset = np.zeros(num_envs, bool)

    def reset(self, *, seed=None, options=None):
        seeds = [None] * self.num_envs if seed is None else (
            [seed + i for i in range(self.num_envs)] if isinstance(seed, int) else list(seed))
        obs, infos = [], {}
        for i, (world, s) in enumerate(zip(self.worlds, seeds)):
            o, info = world.reset(seed=s)
            obs.append(o)
            infos = self._add_info(infos, info, i)
        self._needs_reset[:] = False
        return np.stack(obs), infos

    def step(self, actions):
        actions = np.asarray(actions, dtype=np.float32)
        if actions.shape != self.action_space.shape:  # each world checks its own row, not the row count
            raise ValueError(f"actions of shape {actions.shape} for {self.num_envs} worlds of action shape "
                             f"{self.single_action_space.shape}")
        stepping = [i for i in range(self.num_envs) if not self._needs_reset[i]]
        for i in stepping:
            self.worlds[i].apply_action(actions[i])
        logits = self._reward_logits(stepping)

        obs = np.empty(self.observation_space.shape, np.float32)
        rewards = np.zeros(self.num_envs, np.float64)
        terminated = np.zeros(self.num_envs, bool)
        truncated = np.zeros(self.num_envs, bool)
        infos = {}
        for i, world in enumerate(self.worlds):
            if self._needs_reset[i]:
                obs[i], info = world.reset()
            else:
                obs[i], rewards[i], terminated[i], truncated[i], info = world.finish_step(logits[i])
            infos = self._add_info(infos, info, i)
        self._needs_reset = terminated | truncated
        return obs, rewards, terminated, truncated, infos

    def _reward_logits(self, which: list[int]) -> dict[int, torch.Tensor]:
        if self.batched_layer is None:
            return self._low_rank_logits(which)
        # Worlds serving different requests (a generalist's episodes) hold different reward
        # samples: stack the worlds that share theirs.
        groups: dict[int, list[int]] = {}
        for i in which:
            groups.setdefault(id(self.worlds[i].reward_h), []).append(i)
        logits = {}
        for group in groups.values():
            logits.update(self._stacked_logits(group))
        return logits

    def _stacked_logits(self, which: list[int]) -> dict[int, torch.Tensor]:
        if len(which) == 1:
            return {which[0]: self.worlds[which[0]].reward_logits()}
        first = self.worlds[which[0]]
        h = first.reward_h
        layers = [self.worlds[i].model.get_submodule(self.batched_layer) for i in which]
        with torch.inference_mode():
            weight = torch.cat([layer.weight for layer in layers])  # (n * out, in)
            bias = torch.cat([layer.bias for layer in layers]) if layers[0].bias is not None else None
            z = h @ weight.T if bias is None else torch.addmm(bias, h, weight.T)  # (batch, n * out)
            out = layers[0].weight.shape[0]
            # (batch, n, out) -> (n, batch, out): each world's rows contiguous for the tail.
            z = z.view(len(h), len(which), out).transpose(0, 1).reshape(len(which) * len(h), out)
            tail = first.split.sequential_suffix[1:](z).view(len(which), len(h), -1)
        return dict(zip(which, tail))

    def _low_rank_logits(self, which: list[int]) -> dict[int, torch.Tensor]:
        """Worlds whose edits are low-rank terms of one layer over the same original weights,
        basis and reward rows, at one rank, scored together where their split has a closed form
        (targets/pooled_tail.py: the edits share its reads of the cached activations); the rest
        one by one."""
        groups: dict[tuple | None, list] = {}
        for i in which:
            edit = self.worlds[i].low_rank_edit()
            key = None if edit is None else (id(self.worlds[i].reward_h), edit.key, edit.basis_key, edit.a.shape[1])
            groups.setdefault(key, []).append((i, edit))
        logits = {}
        for key, members in groups.items():
            first = self.worlds[members[0][0]]
            together = getattr(first.split, "closed_form_suffixes", None)
            stacked = (together(first.reward_h, [edit for _, edit in members])
                       if key is not None and len(members) > 1 and together else None)
            if stacked is None:
                logits.update({i: self.worlds[i].reward_logits() for i, _ in members})
            else:
                logits.update({i: rows for (i, _), rows in zip(members, stacked)})
        return logits

    def use_reward_fold(self, k: int) -> None:
        for world in self.worlds:
            world.use_reward_fold(k)

    def close_extras(self, **kwargs):
        for world in self.worlds:
            world.close()


def _stackable_linear(world: EditWorld) -> str | None:
    """The module name of the one edited Linear layer when it opens the suffix (so the
    suffix is `layer` then an unedited tail), else None."""
    suffix = world.split.sequential_suffix
    if len(world.layers) != 1 or not isinstance(suffix, nn.Sequential) or not len(suffix):
        return None
    name = world.layers[0].module_name
    first_name, first = next(iter(suffix.named_children()))
    if name != first_name or not isinstance(first, nn.Linear):
        return None
    return name
