"""The policy networks, without RLlib: built and run the same way inside the RLModules
(module.py, rowwise.py), which add RLlib's interfaces to them, and by `serving.py`, which
runs a checkpoint's policy with no RLlib import (`rledit edit` starts in ~1 s instead of ~3 s).

`FactorizedNet` and `RowwiseNet` are mixins: they build the networks as attributes of an
`nn.Module` (so an RLModule and a plain module have the same state-dict keys) and compute
the mean action from an observation batch. Why the networks look like this: module.py
(factorised) and rowwise.py (row-wise) docstrings.
"""
from __future__ import annotations

from typing import Any, Dict, List, Sequence

import torch
from torch import nn

from rledit_ray import defaults as D
from rledit_ray.worlds.rowwise import unpack_observation

DEFAULT_HIDDEN = (64, 64)
DEFAULT_ROW_WIDTH = 64
DEFAULT_INITIAL_LOG_STD = D.AGENT["initial_log_std"]
HEAD_INIT_STD = 0.01
# The value head starts near zero too. PPO's value loss is clamped at vf_clip_param (10):
# a sample whose squared error exceeds it gives no gradient. With std 1.0 the first values
# were ~+-16 against returns of ~1, every sample was clamped, and the critic never learned
# (explained variance ~0 for whole runs, measured on the default unlearning config).
VALUE_INIT_STD = 0.01


def factor_sizes(factor_layout: Sequence[Dict[str, Any]]) -> List[int]:
    """Sizes of the action segments in env order: [m0*r0, n0*r0, m1*r1, n1*r1, ...]."""
    sizes = []
    for layer in factor_layout:
        rank = int(layer["rank"])
        sizes += [int(layer["m"]) * rank, int(layer["n"]) * rank]
    return sizes


def mlp(in_dim: int, hidden: Sequence[int]) -> nn.Sequential:
    layers: List[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_dim, width), nn.Tanh()]
        in_dim = width
    return nn.Sequential(*layers)


def small_linear(in_dim: int, out_dim: int, std: float) -> nn.Linear:
    layer = nn.Linear(in_dim, out_dim)
    nn.init.normal_(layer.weight, std=std)
    nn.init.zeros_(layer.bias)
    return layer


class FactorHead(nn.Module):
    """Mean of one edited layer's factors: U (m*r values) and V (n*r values)."""

    def __init__(self, in_dim: int, m: int, n: int, rank: int):
        super().__init__()
        self.u = small_linear(in_dim, m * rank, HEAD_INIT_STD)
        self.v = small_linear(in_dim, n * rank, HEAD_INIT_STD)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.u(features), self.v(features)], dim=-1)


class FactorizedNet:
    """A trunk MLP, one FactorHead per edited layer, a free log-std per action dim, and a
    separate value MLP (mixin for an nn.Module)."""

    def build_networks(self, model_config: Dict[str, Any], obs_dim: int, action_dim: int) -> None:
        """The networks of RLlib's `model_config` (the keys FactorizedPPOModule documents)."""
        if "factor_layout" not in model_config:
            raise ValueError("FactorizedPPOModule needs model_config['factor_layout'].")
        self.factor_layout = [dict(layer) for layer in model_config["factor_layout"]]
        if sum(factor_sizes(self.factor_layout)) != action_dim:
            raise ValueError(f"factor_layout {self.factor_layout} packs {sum(factor_sizes(self.factor_layout))} "
                             f"values, but the action space has {action_dim}.")
        hidden = list(model_config.get("hidden", DEFAULT_HIDDEN))
        vf_hidden = hidden if model_config.get("vf_hidden") is None else list(model_config["vf_hidden"])
        initial_log_std = float(model_config.get("initial_log_std", DEFAULT_INITIAL_LOG_STD))
        self.trunk = mlp(obs_dim, hidden)
        feat_dim = hidden[-1] if hidden else obs_dim
        # ModuleList, not ModuleDict: layer names like "fc2.weight" are not valid keys.
        self.heads = nn.ModuleList(FactorHead(feat_dim, int(layer["m"]), int(layer["n"]), int(layer["rank"]))
                                   for layer in self.factor_layout)
        self.log_std = nn.Parameter(torch.full((action_dim,), initial_log_std))
        self.value_net = nn.Sequential(mlp(obs_dim, vf_hidden),
                                       small_linear(vf_hidden[-1] if vf_hidden else obs_dim, 1, VALUE_INIT_STD))

    def action_mean(self, obs: torch.Tensor) -> torch.Tensor:
        """Mean action (unclipped), packed in env order."""
        features = self.trunk(obs.reshape(obs.shape[0], -1).float())
        return torch.cat([head(features) for head in self.heads], dim=-1)

    def factor_means(self, obs: torch.Tensor) -> Dict[str, Dict[str, torch.Tensor]]:
        """Mean factors per layer, shaped {name: {"U": (B, m, r), "V": (B, n, r)}}.

        V is the raw policy output in [-1, 1] space; the env maps it to [0, 1].
        """
        features = self.trunk(obs.reshape(obs.shape[0], -1).float())
        out = {}
        for layer, head in zip(self.factor_layout, self.heads):
            m, n, r = int(layer["m"]), int(layer["n"]), int(layer["rank"])
            out[layer["name"]] = {"U": head.u(features).reshape(-1, m, r), "V": head.v(features).reshape(-1, n, r)}
        return out


class RowwiseNet:
    """Shared row encoder, U head and attention over rows, a per-column V network, a value
    head on pooled rows, and one free log-std per factor and rank component (mixin for an
    nn.Module; rowwise.py says why)."""

    def build_networks(self, model_config: Dict[str, Any], obs_dim: int, action_dim: int) -> None:
        """The networks of RLlib's `model_config` (the keys RowwisePPOModule documents); the
        observation's layout comes from model_config["obs_layout"], not from `obs_dim`."""
        for key in ("obs_layout", "rank"):
            if key not in model_config:
                raise ValueError(f"RowwisePPOModule needs model_config['{key}'].")
        self.layout = {k: int(v) for k, v in dict(model_config["obs_layout"]).items()}
        self.rank = r = int(model_config["rank"])
        m, n = self.layout["m"], self.layout["n"]
        if action_dim != (m + n) * r:
            raise ValueError(f"obs_layout (m={m}, n={n}) at rank {r} packs {(m + n) * r} action values, "
                             f"but the action space has {action_dim}.")
        hidden = list(model_config.get("hidden") or [DEFAULT_ROW_WIDTH, DEFAULT_ROW_WIDTH])
        initial_log_std = float(model_config.get("initial_log_std", DEFAULT_INITIAL_LOG_STD))
        width = hidden[-1]
        fr, fc = self.layout["row_features"], self.layout["col_features"]
        ch, g = self.layout["matrix_channels"], self.layout["globals"]
        self.row_encoder = mlp(fr + g, hidden)
        self.u_head = nn.Sequential(mlp(3 * width, [width]), small_linear(width, r, HEAD_INIT_STD))
        self.attention = nn.Linear(width, r)
        # Per column j and rank component: attended weights (ch), column stats (fc), context.
        self.v_net = nn.Sequential(mlp(ch + fc + 2 * width, [width, width]), small_linear(width, 1, HEAD_INIT_STD))
        self.value_net = nn.Sequential(mlp(2 * width + g, [width, width]), small_linear(width, 1, VALUE_INIT_STD))
        self.log_std_u = nn.Parameter(torch.full((r,), initial_log_std))
        self.log_std_v = nn.Parameter(torch.full((r,), initial_log_std))
        # tanh keeps the mean factors inside the env's [-1, 1] (RowwisePPOModule says why);
        # off in checkpoints made before the key existed, so they serve as they were trained.
        self.bounded_means = bool(model_config.get("bounded_means", False))

    def encode(self, obs: torch.Tensor):
        parts = unpack_observation(obs.reshape(obs.shape[0], -1).float(), self.layout)
        rows, glob = parts["rows"], parts["globals"]
        m = rows.shape[1]
        phi = self.row_encoder(torch.cat([rows, glob[:, None, :].expand(-1, m, -1)], -1))  # (B, m, H)
        pooled = torch.cat([phi.mean(1), phi.max(1).values], -1)  # (B, 2H)
        return parts, phi, pooled

    def factor_means(self, obs: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Mean factors: U (B, m, r) and raw V (B, n, r) (the env maps V to [0, 1])."""
        parts, phi, pooled = self.encode(obs)
        b, m, _ = phi.shape
        n, r = self.layout["n"], self.rank
        u = self.u_head(torch.cat([phi, pooled[:, None, :].expand(-1, m, -1)], -1))  # (B, m, r)
        attn = self.attention(phi).softmax(dim=1)  # (B, m, r): which rows matter, per component
        attended = torch.einsum("bmr,bmnc->bnrc", attn, parts["matrix"])  # (B, n, r, C)
        cols = parts["cols"][:, :, None, :].expand(-1, -1, r, -1)
        context = pooled[:, None, None, :].expand(-1, n, r, -1)
        v = self.v_net(torch.cat([attended, cols, context], -1)).squeeze(-1)  # (B, n, r)
        if self.bounded_means:
            u, v = u.tanh(), v.tanh()
        return {"U": u, "V": v}

    def action_mean(self, obs: torch.Tensor) -> torch.Tensor:
        f = self.factor_means(obs)
        return torch.cat([f["U"].flatten(1), f["V"].flatten(1)], -1)
