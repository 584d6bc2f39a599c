"""What a world is built with, and the checks of those values (one place for them: a run
config's `check` builds these settings and checks them here).

No torch and no world here: `rledit train` checks a config before torch loads and before Ray
starts, so a wrong value is answered in well under a second (tests/test_cli.py).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from rledit_ray import defaults as D
from rledit_ray.errors import UserError

REWARD_MODES = ("improvement", "level")
MASK_UPDATES = ("multiplicative", "additive")
OBSERVATIONS = ("weights", "rowwise")  # worlds/base.py holds their builders
# Devices a world can run on. torch knows more names (mps, xla, meta, ...), but the worlds'
# code paths are written and tested for these.
DEVICE_NAME = re.compile(r"auto|cpu|cuda(:\d+)?")


@dataclass
class WorldSettings:
    rank: int = D.RANK
    step_size: float | None = None  # None: the world's own (defaults.STEP_SIZE)
    mask_bounds: tuple[float, float] = D.MASK_BOUNDS
    mask_update: str = D.MASK_UPDATE  # "multiplicative" or "additive" (worlds/mask.py)
    episode_length: int = D.EPISODE_LENGTH
    utility_coef: float = D.UTILITY_COEF
    objective_coef: float = D.OBJECTIVE_COEF
    # "improvement": reward = score_t - score_{t-1} (the return telescopes to the final
    # edit's score gain); "level": reward = score_t - score_0 at every step.
    reward_mode: str = D.REWARD_MODE
    obs_budget: int = D.OBS_BUDGET
    # 0: factors over rows and columns; k: over k directions per side; (k_out, k_in): per side
    # apart, 0 keeping that side's coordinates (worlds/bases.py)
    factor_basis: int | tuple[int, int] = D.FACTOR_BASIS
    observation: str = "weights"
    seed: int = 0
    device: str = "auto"

    def check(self) -> None:
        if self.rank < 1:
            raise UserError(f"rank must be >= 1 (got {self.rank})")
        if self.episode_length < 1:
            raise UserError(f"episode_length must be >= 1 (got {self.episode_length})")
        if self.step_size is not None and self.step_size <= 0:
            raise UserError(f"step_size must be > 0 (got {self.step_size})")
        lo, hi = self.mask_bounds
        if not lo <= 1.0 <= hi:
            raise UserError(f"mask_bounds must contain 1 (the unedited mask), got [{lo}, {hi}]")
        if self.mask_update not in MASK_UPDATES:
            raise UserError(f"unknown mask_update '{self.mask_update}': choose {' or '.join(MASK_UPDATES)}")
        if self.reward_mode not in REWARD_MODES:
            raise UserError(f"unknown reward mode '{self.reward_mode}': choose {' or '.join(REWARD_MODES)}")
        if self.observation not in OBSERVATIONS:
            raise UserError(f"unknown observation '{self.observation}': choose {' or '.join(OBSERVATIONS)}")
        fb = self.factor_basis
        one_size = isinstance(fb, int) and fb >= 0
        two_sizes = isinstance(fb, (tuple, list)) and len(fb) == 2 and all(isinstance(k, int) and k >= 0 for k in fb)
        if not (one_size or two_sizes):
            raise UserError(f"factor_basis must be k >= 0 or [k_out, k_in] of such (got {fb}): "
                            f"0 for none, k for k directions per side")
        if self.obs_budget < 1:
            raise UserError(f"obs_budget must be >= 1 (got {self.obs_budget})")
        if not DEVICE_NAME.fullmatch(str(self.device)):
            raise UserError(f"unknown device '{self.device}': choose auto, cpu, cuda or cuda:K")
