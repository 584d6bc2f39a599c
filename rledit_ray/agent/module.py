"""FactorizedPPOModule: the PPO policy/value network that emits low-rank weight edits.

The env's action is a flat Box(-1, 1) that packs, for each edited layer i of shape
(m_i, n_i) at rank r, the factor U_i (m_i*r values, row-major (m_i, r)) followed by
V_i (n_i*r values, row-major (n_i, r)); the env forms D_i = U_i V_i^T / r.

Why the network looks like this (see docs/design.md, "Measured findings"):

- Factorised heads. One linear head per edited layer and per factor (U and V) keeps the
  action head organised the way the env reads it: the weights that produce U_i are
  separate parameters from those that produce V_i, so the structure is inspectable
  (`factor_means`) and a layer can be added without reshuffling an opaque output vector.
  The concatenation order equals the env's packing order.
- V >= 0 lives in the env, not here. With U and V both zero-mean the reward depends only
  on their product, and the policy gradient at the start is ~0 (a saddle). The env maps
  V from [-1, 1] to [0, 1] so signs are carried by U. Doing it in the env keeps the
  policy a plain diagonal Gaussian on a [-1, 1] box (what RLlib's PPO expects) and keeps
  "zero action = no edit" true for U regardless of V.
- Free (state-independent) log-std. Exploration noise does not depend on the
  observation; one learned log-std per action dim. In ~140 action dims this moved PPO
  ~10x faster than a state-dependent std in the feasibility runs.
- Small initial mean heads. The first policy is ~the zero action (no edit) plus noise,
  so early episodes do not start by wrecking the target network.
- A separate value MLP: the value scale (reward terms) and the action features have
  little in common; sharing a trunk lets value-loss gradients disturb the policy. Its
  output layer starts near zero (see nets.VALUE_INIT_STD).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import gymnasium as gym
import numpy as np
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.apis import InferenceOnlyAPI, ValueFunctionAPI
from ray.rllib.core.rl_module.torch import TorchRLModule
from ray.rllib.utils.annotations import override
from torch import nn

from rledit_ray.agent.nets import FactorHead, FactorizedNet, factor_sizes

__all__ = ["FactorizedPPOModule", "ModeFreeTrain", "factor_sizes"]
# Layers whose forward pass is the same in training and eval mode (see FactorizedPPOModule.train).
MODE_FREE_LAYERS = (nn.Linear, nn.Tanh, nn.ReLU, nn.Sequential, nn.ModuleList, nn.Identity)


class ModeFreeTrain:
    """Mixin for RLModules: train()/eval() flip only the module's own flag, not every
    submodule's. RLlib calls eval() and train() around each sampling forward pass, and
    torch's recursive version cost ~0.35 ms per call here (measured: ~14% of an EnvRunner's
    CPU per env step at one sub-env). That is only right while no layer behaves differently
    in training mode: `refuse_mode_dependent_layers()`, called at the end of setup, makes
    adding dropout or batch norm fail loudly instead of silently staying in training mode."""

    def train(self, mode: bool = True):
        self.training = mode
        return self

    def refuse_mode_dependent_layers(self) -> None:
        mode_dependent = [type(m).__name__ for m in self.modules()
                          if m is not self and not isinstance(m, (*MODE_FREE_LAYERS, FactorHead))]
        if mode_dependent:
            raise TypeError(f"{type(self).__name__}.train() skips submodules, but {mode_dependent} may depend "
                            "on training mode: remove the train() override first")


class FactorizedPPOModule(ModeFreeTrain, FactorizedNet, TorchRLModule, InferenceOnlyAPI, ValueFunctionAPI):
    """Torch RLModule for PPO with per-layer low-rank factor heads (the networks: nets.FactorizedNet).

    model_config keys:
        factor_layout: list of {"name", "m", "n", "rank"} (required), in env order.
        hidden: trunk widths, default [64, 64].
        vf_hidden: value-MLP widths, default = hidden.
        initial_log_std: starting log-std of every action dim, default -0.7.
    """

    @override(TorchRLModule)
    def setup(self):
        if not isinstance(self.action_space, gym.spaces.Box):
            raise ValueError(f"Need a Box action space, got {self.action_space}.")
        self.build_networks(dict(self.model_config or {}), int(np.prod(self.observation_space.shape)),
                            int(np.prod(self.action_space.shape)))
        self.refuse_mode_dependent_layers()

    @override(InferenceOnlyAPI)
    def get_non_inference_attributes(self) -> List[str]:
        # EnvRunners only sample actions; they need neither the value net nor its
        # weights on every sync.
        return ["value_net"]

    def _obs(self, batch: Dict[str, Any]) -> torch.Tensor:
        obs = batch[Columns.OBS]
        return obs.reshape(obs.shape[0], -1).float()

    @override(TorchRLModule)
    def _forward(self, batch: Dict[str, Any], **kwargs) -> Dict[str, Any]:
        mean = self.action_mean(self._obs(batch))
        log_std = self.log_std.expand_as(mean)
        # TorchDiagGaussian.from_logits splits this in half: (loc, log_std).
        return {Columns.ACTION_DIST_INPUTS: torch.cat([mean, log_std], dim=-1)}

    @override(ValueFunctionAPI)
    def compute_values(
        self, batch: Dict[str, Any], embeddings: Optional[Any] = None
    ) -> torch.Tensor:
        # `embeddings` is ignored: the value net has its own trunk.
        return self.value_net(self._obs(batch)).squeeze(-1)
