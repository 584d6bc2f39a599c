"""Using a trained policy without an Algorithm (and without a Ray cluster).

- `load_module(dir)`: the FactorizedPPOModule (or RowwisePPOModule) from a checkpoint that
  `Algorithm.save_to_path(dir)` wrote (or from a module directory inside it).
- `module_from_algo(algo)`: the live module of a running Algorithm, on the driver.
- `deterministic_action(module, obs)`: the mean action, clipped to the action box,
  i.e. what the env would receive from RLlib with exploration off.
"""

from __future__ import annotations

import pathlib
from typing import Union

import numpy as np
import torch
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.rl_module import RLModule

from rledit_ray.agent.module import FactorizedPPOModule
from rledit_ray.agent.rowwise import RowwisePPOModule

# Where Algorithm.save_to_path() puts the learner's (full, trained) module in ray 2.60.
# The env_runner/ sub-dir holds only connector states, no module weights.
MODULE_SUBDIR = pathlib.Path("learner_group", "learner", "rl_module", DEFAULT_MODULE_ID)
_MODULE_FILES = ("class_and_ctor_args.pkl", "module_state.pkl")


def find_module_dir(checkpoint_dir: Union[str, pathlib.Path]) -> pathlib.Path:
    """Return the single-module directory inside an Algorithm (or module) checkpoint."""
    root = pathlib.Path(checkpoint_dir)
    for candidate in (root / MODULE_SUBDIR, root / DEFAULT_MODULE_ID, root):
        if all((candidate / name).is_file() for name in _MODULE_FILES):
            return candidate
    raise FileNotFoundError(
        f"No RLModule checkpoint under {root} (looked for {MODULE_SUBDIR}/ and "
        f"{DEFAULT_MODULE_ID}/)."
    )


def load_module(checkpoint_dir: Union[str, pathlib.Path]) -> FactorizedPPOModule:
    """Load the trained module on CPU, in eval mode; needs no Ray cluster."""
    module = RLModule.from_checkpoint(find_module_dir(checkpoint_dir).as_posix())
    if not isinstance(module, (FactorizedPPOModule, RowwisePPOModule)):
        raise TypeError(f"Expected a FactorizedPPOModule or RowwisePPOModule, got {type(module).__name__}.")
    return module.to("cpu").eval()


def module_from_algo(algo) -> FactorizedPPOModule:
    """The driver's copy of the current policy in a live Algorithm.

    This is the local EnvRunner's inference-only module; RLlib syncs it from the
    learner after every `algo.train()`. It is the live object: deep-copy it (or save a
    checkpoint) to keep a snapshot, e.g. the best policy seen so far.
    """
    module = algo.get_module(DEFAULT_MODULE_ID)
    if module is None:
        raise RuntimeError(f"Algorithm has no module {DEFAULT_MODULE_ID!r}.")
    return module


def deterministic_action(module: RLModule, obs: np.ndarray) -> np.ndarray:
    """Mean action for `obs` of shape (O,) or (B, O), clipped to [-1, 1] like the env.

    Goes through the module's own inference distribution, so it stays right if the
    distribution class changes.
    """
    obs = np.asarray(obs, dtype=np.float32)
    single = obs.ndim == 1
    batch_obs = obs[None] if single else obs
    device = next(module.parameters()).device
    with torch.no_grad():
        out = module.forward_inference(
            {Columns.OBS: torch.as_tensor(batch_obs, device=device)}
        )
        dist = module.get_inference_action_dist_cls().from_logits(
            out[Columns.ACTION_DIST_INPUTS]
        )
        action = dist.to_deterministic().sample().cpu().numpy()
    low, high = module.action_space.low, module.action_space.high
    action = np.clip(action, low, high).astype(np.float32)
    return action[0] if single else action
