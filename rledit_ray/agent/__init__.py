"""The RLlib layer: PPO with a factorised low-rank action module.

This is the only package that imports Ray/RLlib; worlds, tasks and targets below it
stay Ray-free and reach the agent only through their gymnasium interface.
"""

from rledit_ray.agent.module import FactorizedPPOModule, factor_sizes
from rledit_ray.agent.policy import deterministic_action, load_module, module_from_algo
from rledit_ray.agent.ppo import AgentSettings, build_ppo_config, cpu_fallback
from rledit_ray.agent.rowwise import RowwisePPOModule

__all__ = [
    "AgentSettings",
    "FactorizedPPOModule",
    "RowwisePPOModule",
    "build_ppo_config",
    "cpu_fallback",
    "deterministic_action",
    "factor_sizes",
    "load_module",
    "module_from_algo",
]
