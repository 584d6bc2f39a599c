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

from rledit_ray.agent.module import DEFAULT_INITIAL_LOG_STD, HEAD_INIT_STD, VALUE_INIT_STD, ModeFreeTrain, _mlp, _small_linear
from rledit_ray.worlds.rowwise import unpack_observation

DEFAULT_WIDTH = 64


class RowwisePPOModule(ModeFreeTrain, TorchRLModule, InferenceOnlyAPI, ValueFunctionAPI):
    """model_config keys: obs_layout (required; worlds/rowwise.obs_layout), rank (required),
    hidden (its last width is the row-encoding width, default 64), initial_log_std."""

    @override(TorchRLModule)
    def setup(self):
        cfg = dict(self.model_config or {})
        for key in ("obs_layout", "rank"):
            if key not in cfg:
                raise ValueError(f"RowwisePPOModule needs model_config['{key}'].")
        self.layout = {k: int(v) for k, v in dict(cfg["obs_layout"]).items()}
        self.rank = int(cfg["rank"])
        m, n, r = self.layout["m"], self.layout["n"], self.rank
        if not isinstance(self.action_space, gym.spaces.Box):
            raise ValueError(f"Need a Box action space, got {self.action_space}.")
        if int(np.prod(self.action_space.shape)) != (m + n) * r:
            raise ValueError(f"obs_layout (m={m}, n={n}) at rank {r} packs {(m + n) * r} action values, "
                             f"but the action space has {int(np.prod(self.action_space.shape))}.")
        hidden = list(cfg.get("hidden") or [DEFAULT_WIDTH, DEFAULT_WIDTH])
        width = hidden[-1]
        fr, fc = self.layout["row_features"], self.layout["col_features"]
        ch, g = self.layout["matrix_channels"], self.layout["globals"]

        self.row_encoder = _mlp(fr + g, hidden)
        self.u_head = nn.Sequential(_mlp(3 * width, [width]), _small_linear(width, r, HEAD_INIT_STD))
        self.attention = nn.Linear(width, r)
        # Per column j and rank component: attended weights (ch), column stats (fc), context.
        self.v_net = nn.Sequential(_mlp(ch + fc + 2 * width, [width, width]), _small_linear(width, 1, HEAD_INIT_STD))
        self.value_net = nn.Sequential(_mlp(2 * width + g, [width, width]), _small_linear(width, 1, VALUE_INIT_STD))
        initial = float(cfg.get("initial_log_std", DEFAULT_INITIAL_LOG_STD))
        self.log_std_u = nn.Parameter(torch.full((r,), initial))
        self.log_std_v = nn.Parameter(torch.full((r,), initial))
        self.refuse_mode_dependent_layers()

    @override(InferenceOnlyAPI)
    def get_non_inference_attributes(self) -> List[str]:
        return ["value_net"]

    def _encode(self, obs: torch.Tensor):
        parts = unpack_observation(obs.reshape(obs.shape[0], -1).float(), self.layout)
        rows, glob = parts["rows"], parts["globals"]
        m = rows.shape[1]
        phi = self.row_encoder(torch.cat([rows, glob[:, None, :].expand(-1, m, -1)], -1))  # (B, m, H)
        pooled = torch.cat([phi.mean(1), phi.max(1).values], -1)  # (B, 2H)
        return parts, phi, pooled

    def factor_means(self, obs: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Mean factors: U (B, m, r) and raw V (B, n, r) (the env maps V to [0, 1])."""
        parts, phi, pooled = self._encode(obs)
        b, m, _ = phi.shape
        n, r = self.layout["n"], self.rank
        u = self.u_head(torch.cat([phi, pooled[:, None, :].expand(-1, m, -1)], -1))  # (B, m, r)
        attn = self.attention(phi).softmax(dim=1)  # (B, m, r): which rows matter, per component
        attended = torch.einsum("bmr,bmnc->bnrc", attn, parts["matrix"])  # (B, n, r, C)
        cols = parts["cols"][:, :, None, :].expand(-1, -1, r, -1)
        context = pooled[:, None, None, :].expand(-1, n, r, -1)
        v = self.v_net(torch.cat([attended, cols, context], -1)).squeeze(-1)  # (B, n, r)
        return {"U": u, "V": v}

    def action_mean(self, obs: torch.Tensor) -> torch.Tensor:
        f = self.factor_means(obs)
        return torch.cat([f["U"].flatten(1), f["V"].flatten(1)], -1)

    @override(TorchRLModule)
    def _forward(self, batch: Dict[str, Any], **kwargs) -> Dict[str, Any]:
        mean = self.action_mean(batch[Columns.OBS])
        m, n = self.layout["m"], self.layout["n"]
        log_std = torch.cat([self.log_std_u.repeat(m), self.log_std_v.repeat(n)]).expand_as(mean)
        return {Columns.ACTION_DIST_INPUTS: torch.cat([mean, log_std], dim=-1)}

    @override(ValueFunctionAPI)
    def compute_values(self, batch: Dict[str, Any], embeddings: Optional[Any] = None) -> torch.Tensor:
        parts, _, pooled = self._encode(batch[Columns.OBS])
        return self.value_net(torch.cat([pooled, parts["globals"]], -1)).squeeze(-1)
