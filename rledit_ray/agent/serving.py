"""A checkpoint's deterministic policy without RLlib: what `rledit edit` serves with.

RLlib's own way (`policy.load_module` then `deterministic_action`) imports RLlib, ~1.5 s of a
~3 s `rledit edit` here. Every checkpoint a run saves also holds `rledit_policy.json`: which
network (factorized or rowwise) and the model_config RLlib built it with. From that and the
module's saved weights (a pickle of numpy arrays), `load_policy` rebuilds the same network
(nets.py: the very code the RLModule runs) and returns its mean action clipped to the action
box: what `deterministic_action` computes (a diagonal Gaussian's deterministic sample is its
mean; tests/test_serving.py checks they agree on a trained checkpoint).
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from rledit_ray.agent.nets import FactorizedNet, RowwiseNet

POLICY_SPEC = "rledit_policy.json"
# Where Algorithm.save_to_path() puts the learner's module weights in ray 2.60.
MODULE_STATE = Path("learner_group", "learner", "rl_module", "default_policy", "module_state.pkl")


class FactorizedPolicy(FactorizedNet, nn.Module):
    def __init__(self, model_config: dict, obs_dim: int, action_dim: int):
        nn.Module.__init__(self)
        self.build_networks(model_config, obs_dim, action_dim)


class RowwisePolicy(RowwiseNet, nn.Module):
    def __init__(self, model_config: dict, obs_dim: int, action_dim: int):
        nn.Module.__init__(self)
        self.build_networks(model_config, obs_dim, action_dim)


NETWORKS = {"factorized": FactorizedPolicy, "rowwise": RowwisePolicy}


def policy_spec(module) -> dict:
    """What `load_policy` needs to rebuild `module` (a FactorizedPPOModule or RowwisePPOModule)."""
    kind = "rowwise" if isinstance(module, RowwiseNet) else "factorized"
    return {"network": kind, "model_config": dict(module.model_config),
            "obs_dim": int(np.prod(module.observation_space.shape)),
            "action_dim": int(np.prod(module.action_space.shape))}


def load_policy(ckpt: Path, spec: dict, low, high) -> Callable[[np.ndarray], np.ndarray]:
    """The deterministic policy of checkpoint folder `ckpt` (its `spec`, read from POLICY_SPEC),
    clipped to [low, high]: obs (O,) or (B, O) -> action (A,) or (B, A). Raises what a damaged
    checkpoint raises (OSError, pickle errors, KeyError, RuntimeError on a shape mismatch)."""
    with open(Path(ckpt) / MODULE_STATE, "rb") as f:
        state = pickle.load(f)
    net = NETWORKS[spec["network"]](spec["model_config"], int(spec["obs_dim"]), int(spec["action_dim"]))
    net.load_state_dict({name: torch.as_tensor(np.asarray(value)) for name, value in state.items()})
    net.eval()

    def act(obs: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs, dtype=np.float32)
        with torch.no_grad():
            mean = net.action_mean(torch.as_tensor(obs[None] if obs.ndim == 1 else obs)).numpy()
        action = np.clip(mean, low, high).astype(np.float32)
        return action[0] if obs.ndim == 1 else action
    return act
