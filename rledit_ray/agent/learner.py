"""EditPPOLearner: RLlib's torch PPO learner with a surrogate that stays finite for wide actions.

Why it exists: an edit action has hundreds to thousands of dimensions (rank-1 factors of
the bias head's 64x384 fc1: 449; MNIST's fc1 with its bias: 1,698). PPO's probability ratio
is exp(sum over those dimensions of each one's log-prob change), so a policy that moved a
little in every dimension during one iteration's minibatch steps produces log-ratios of
hundreds; exp() leaves float32 range at ~88. For a negative advantage PPO's min() then
picks the unclipped, infinite term, the loss is inf, the gradients nan, and RLlib zeroes
them ("Setting nan/inf gradients to zero"): the policy stops learning, silently.

The fix is dual-clip PPO (Ye et al. 2020, "Mastering Complex Control in MOBA Games with
Deep RL"): for a negative advantage the surrogate is bounded below by `dual_clip` times the
advantage, so a sample whose ratio ran away contributes a constant (no gradient) instead of
an unbounded term, and the log-ratio is clamped before exp() so nothing overflows on the way.
For ratios inside [1 - clip, dual_clip] the loss equals RLlib's.

`EditPPOLearner.compute_loss_for_module` is a copy of ray 2.60.0's
`PPOTorchLearner.compute_loss_for_module` (ray/rllib/algorithms/ppo/torch/ppo_torch_learner.py)
with the surrogate line replaced (and, under `agent.ppo_logp: mean`, its log-probs averaged
over the action's dims), two metrics added; value loss, entropy and KL are
RLlib's, unchanged. RLlib offers no narrower hook (the surrogate is inline in that method).
`RLLIB_LOSS_FINGERPRINT` is a hash of the copied method's source, and a test fails when the
installed RLlib's differs: then re-read RLlib's loss and carry its changes over.
"""

from __future__ import annotations

import math
from typing import Any, Dict

import torch
from ray.rllib.algorithms.ppo.ppo import (
    LEARNER_RESULTS_KL_KEY,
    LEARNER_RESULTS_VF_EXPLAINED_VAR_KEY,
    LEARNER_RESULTS_VF_LOSS_UNCLIPPED_KEY,
)
from ray.rllib.algorithms.ppo.torch.ppo_torch_learner import PPOTorchLearner
from ray.rllib.core.columns import Columns
from ray.rllib.core.learner.learner import ENTROPY_KEY, POLICY_LOSS_KEY, VF_LOSS_KEY
from ray.rllib.evaluation.postprocessing import Postprocessing
from ray.rllib.utils.torch_utils import explained_variance

DUAL_CLIP = 3.0  # the paper's value; the bound a negative advantage's ratio can push the loss to
# exp(20) ~ 5e8: far beyond any clip bound (so the loss is unchanged) and far from overflow.
MAX_LOG_RATIO = 20.0
CLIP_FRACTION_KEY = "clip_fraction"
# sha256 (first 16 hex digits) of inspect.getsource(PPOTorchLearner.compute_loss_for_module), ray 2.60.0.
RLLIB_LOSS_FINGERPRINT = "c94d6a6faf8906ac"
LOG_RATIO_KEY = "mean_abs_log_ratio"


def dual_clip_surrogate(
    logp_new: torch.Tensor,
    logp_old: torch.Tensor,
    advantages: torch.Tensor,
    clip: float,
    dual_clip: float = DUAL_CLIP,
) -> torch.Tensor:
    """Per-sample PPO surrogate (to be maximised), dual-clipped and finite for any log-probs.

    Equals min(r A, clip(r, 1-clip, 1+clip) A) with r = exp(logp_new - logp_old) wherever
    r <= dual_clip; for A < 0 and larger r it is dual_clip * A (constant in the policy).
    """
    if dual_clip <= 1.0:
        raise ValueError(f"dual_clip must be > 1 (got {dual_clip})")
    log_ratio = torch.clamp(logp_new - logp_old, -MAX_LOG_RATIO, MAX_LOG_RATIO)
    ratio = torch.exp(log_ratio)
    clipped = torch.min(advantages * ratio, advantages * torch.clamp(ratio, 1 - clip, 1 + clip))
    return torch.where(advantages < 0, torch.max(clipped, dual_clip * advantages), clipped)


def per_dim_mean(logp_new: torch.Tensor, logp_old: torch.Tensor, dims: int):
    """The log-probs whose ratio is the per-dim mean one (DDPO's choice for wide actions): a
    step that moves every dim a little no longer multiplies into a huge joint ratio."""
    return logp_new / dims, logp_old / dims


class EditPPOLearner(PPOTorchLearner):
    """PPOTorchLearner whose policy loss is `dual_clip_surrogate`; logs the clip fraction too."""

    def compute_loss_for_module(self, *, module_id, config, batch: Dict[str, Any], fwd_out) -> torch.Tensor:
        module = self.module[module_id].unwrapped()
        if Columns.LOSS_MASK in batch:
            mask = batch[Columns.LOSS_MASK]
            num_valid = torch.sum(mask)

            def mean(data):
                return torch.sum(data[mask]) / num_valid
        else:
            mean = torch.mean

        curr_dist = module.get_train_action_dist_cls().from_logits(fwd_out[Columns.ACTION_DIST_INPUTS])
        logp_new = curr_dist.logp(batch[Columns.ACTIONS])
        logp_old = batch[Columns.ACTION_LOGP]
        advantages = batch[Postprocessing.ADVANTAGES]
        if config.learner_config_dict.get("ppo_logp") == "mean":
            logp_new, logp_old = per_dim_mean(logp_new, logp_old, batch[Columns.ACTIONS].shape[-1])
        surrogate = dual_clip_surrogate(logp_new, logp_old, advantages, config.clip_param)

        if config.use_kl_loss:
            prev_dist = module.get_exploration_action_dist_cls().from_logits(batch[Columns.ACTION_DIST_INPUTS])
            mean_kl = mean(prev_dist.kl(curr_dist))
        else:
            mean_kl = torch.tensor(0.0, device=surrogate.device)
        entropy = curr_dist.entropy()

        if config.use_critic:
            values = module.compute_values(batch, embeddings=fwd_out.get(Columns.EMBEDDINGS))
            vf_loss = torch.pow(values - batch[Postprocessing.VALUE_TARGETS], 2.0)
            vf_loss_clipped = torch.clamp(vf_loss, 0, config.vf_clip_param)
            mean_vf_loss, mean_vf_unclipped = mean(vf_loss_clipped), mean(vf_loss)
        else:
            values = mean_vf_loss = mean_vf_unclipped = vf_loss_clipped = torch.tensor(0.0, device=surrogate.device)

        entropy_coeff = self.entropy_coeff_schedulers_per_module[module_id].get_current_value()
        total_loss = mean(-surrogate + config.vf_loss_coeff * vf_loss_clipped - entropy_coeff * entropy)
        if config.use_kl_loss:
            total_loss += self.curr_kl_coeffs_per_module[module_id] * mean_kl

        with torch.no_grad():
            log_ratio = logp_new - logp_old
            outside = (log_ratio < math.log(1 - config.clip_param)) | (log_ratio > math.log(1 + config.clip_param))
            clip_fraction = mean(outside.float())
        self.metrics.log_dict(
            {
                POLICY_LOSS_KEY: -mean(surrogate),
                VF_LOSS_KEY: mean_vf_loss,
                LEARNER_RESULTS_VF_LOSS_UNCLIPPED_KEY: mean_vf_unclipped,
                LEARNER_RESULTS_VF_EXPLAINED_VAR_KEY: explained_variance(batch[Postprocessing.VALUE_TARGETS], values),
                ENTROPY_KEY: mean(entropy),
                LEARNER_RESULTS_KL_KEY: mean_kl,
                CLIP_FRACTION_KEY: clip_fraction,
                LOG_RATIO_KEY: mean(log_ratio.abs()),
            },
            key=module_id,
            window=1,
        )
        return total_loss
