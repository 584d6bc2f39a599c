"""The RLlib layer: PPO with a factorised low-rank action module.

This is the only package that imports Ray/RLlib; worlds, tasks and targets below it
stay Ray-free and reach the agent only through their gymnasium interface. Two of its
modules import no RLlib either: nets.py (the policy networks) and serving.py (a checkpoint's
policy, run without RLlib by `rledit edit`); so the names below load their module on first
use, and importing `rledit_ray.agent.serving` does not import RLlib.
"""

import importlib

_HOMES = {
    "AgentSettings": "ppo", "build_ppo_config": "ppo", "cpu_fallback": "ppo",
    "FactorizedPPOModule": "module", "factor_sizes": "nets", "RowwisePPOModule": "rowwise",
    "deterministic_action": "policy", "load_module": "policy", "module_from_algo": "policy",
}
__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(importlib.import_module(f"rledit_ray.agent.{_HOMES[name]}"), name)
    raise AttributeError(f"module 'rledit_ray.agent' has no attribute {name!r}")
