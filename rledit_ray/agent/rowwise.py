"""RowwisePPOModule: one small network per output row, so a policy trained on some classes
edits others.

It reads the row-wise observation (worlds/rowwise.py: per-row request statistics, per-column
input statistics, the current and original weight matrix, globals) and emits the same
packed action as FactorizedPPOModule: U (m x r, row-major) then V (n x r).

- Rows alike. A shared MLP encodes each row's features (with the globals) into phi_i; U_i is
  a shared head on [phi_i, pooled phi], pooled = mean and max over rows. Permuting the rows
  of the observation permutes U and leaves V and the value unchanged (tests check it), so a
  row that looks like "the class being forgotten" is treated the same whichever class it is.
- Columns from the attended rows. V must say which inputs to cut, and that depends on the
  forgotten row's weights: an attention over rows (softmax of a score per phi_i, one per
  rank component) pools the weight matrix's rows, and a shared MLP per column maps
  [pooled weights of column j, column j's input statistics, pooled phi] to V_j. Columns are
  the same inputs for every request, so they need no symmetry; sharing the MLP keeps the
  parameter count independent of the layer's width.
- The value head reads pooled row encodings and the globals; one free log-std per factor
  (U, V) and rank component, shared across rows, keeps exploration row-symmetric too.
- Small initial heads: the first policy is ~the zero action (no edit), as in module.py.
- Bounded means (model_config["bounded_means"], on for every new run): U and V means pass
  through tanh. Without it a generalist fell into a dead zone: its V means drifted below -1,
  every sampled V clipped to -1 (V = 0 in the env: no edit), every return and advantage was
  the same, and PPO never got a gradient again (docs/generalist.md, "Stability"). Inside
  (-1, 1) about half of the samples of even a saturated mean still edit.
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

from rledit_ray.agent.module import ModeFreeTrain
from rledit_ray.agent.nets import RowwiseNet


class RowwisePPOModule(ModeFreeTrain, RowwiseNet, TorchRLModule, InferenceOnlyAPI, ValueFunctionAPI):
    """model_config keys: obs_layout (required; worlds/rowwise.obs_layout), rank (required),
    hidden (its last width is the row-encoding width, default 64), initial_log_std.
    The networks: nets.RowwiseNet."""

    @override(TorchRLModule)
    def setup(self):
        if not isinstance(self.action_space, gym.spaces.Box):
            raise ValueError(f"Need a Box action space, got {self.action_space}.")
        self.build_networks(dict(self.model_config or {}), int(np.prod(self.observation_space.shape)),
                            int(np.prod(self.action_space.shape)))
        self.refuse_mode_dependent_layers()

    @override(InferenceOnlyAPI)
    def get_non_inference_attributes(self) -> List[str]:
        return ["value_net"]

    @override(TorchRLModule)
    def _forward(self, batch: Dict[str, Any], **kwargs) -> Dict[str, Any]:
        mean = self.action_mean(batch[Columns.OBS])
        m, n = self.layout["m"], self.layout["n"]
        log_std = torch.cat([self.log_std_u.repeat(m), self.log_std_v.repeat(n)]).expand_as(mean)
        return {Columns.ACTION_DIST_INPUTS: torch.cat([mean, log_std], dim=-1)}

    @override(ValueFunctionAPI)
    def compute_values(self, batch: Dict[str, Any], embeddings: Optional[Any] = None) -> torch.Tensor:
        parts, _, pooled = self.encode(batch[Columns.OBS])
        return self.value_net(torch.cat([pooled, parts["globals"]], -1)).squeeze(-1)
