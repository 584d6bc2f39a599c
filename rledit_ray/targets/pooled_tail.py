"""A low-rank edit of an encoder's last FFN output, through its residual LayerNorm and the mean
pooling, in closed form: the reward's forward pass without a (tokens x width) tensor per step.

The FFN output of a BERT-style encoder's last layer feeds `LayerNorm(dense(x) + residual)`,
whose output is the last hidden state; a sentence classifier (targets/sentence_classifier.py)
then averages it over each text's real tokens. Under ShiftWorld's edit the layer's output is
its original output plus A s_t, with s_t = B^T x_t the R coefficients of token t
(targets/forward.py, LowRankEdit). So the LayerNorm's input is c_t + A s_t, with c_t (the input
at the original weights) the same at every step, and with c~_t = c_t - mean(c_t) and
A~ = A minus its column means (the LayerNorm removes each token's mean):

    var_t  = (|c~_t|^2 + 2 s_t . (A~^T c~_t) + s_t^T (A~^T A~) s_t) / width
    pooled = gamma * (sum_t w_t c~_t + A~ sum_t w_t s_t) + beta,   w_t = mask_t / (n * sqrt(var_t + eps))

with n a text's real tokens. A step reads c~ twice (A~^T c~_t, then the weighted sum) and
the coefficients' inputs once, and E edits scored together share those reads; the replay
through the model's own code (targets/memo.py) writes and reads (tokens x width) tensors some
ten times per edit: the layer's output, the residual sum, the LayerNorm, the masked pooling. On
the bias task's ES config over its whole reward pool, a world step costs 0.153 s against the
replay's 0.234 s, and the logits of 8 edits together 0.021 s per edit (docs/deep-edits.md,
`python scripts/factored_step.py --per-set 1024`).

`PooledTail` holds what is fixed for one chunk of texts; the memo split builds it once per
chunk and checks its logits against the replay's before it uses it.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class PooledTail:
    centred: torch.Tensor  # (B, L, width): the LayerNorm's input at the original weights, minus its token means
    squared: torch.Tensor  # (B, L): |centred|^2 per token
    weights: torch.Tensor  # (B, L): mask / real tokens of the row (a row without any: zeros)
    gamma: torch.Tensor
    beta: torch.Tensor
    eps: float

    @classmethod
    def capture(cls, norm_input: torch.Tensor, mask: torch.Tensor, norm: nn.Module) -> "PooledTail | None":
        """From the LayerNorm's input at the original weights (B, L, width) and the attention
        mask (B, L); None when `norm` is not an affine LayerNorm over the last dim."""
        width = norm_input.shape[-1]
        if (not isinstance(norm, nn.LayerNorm) or tuple(norm.normalized_shape) != (width,)
                or norm.weight is None or norm.bias is None):
            return None
        centred = norm_input - norm_input.mean(-1, keepdim=True)
        mask = mask.to(norm_input.dtype)
        weights = mask / mask.sum(1, keepdim=True).clamp_min(1e-9)
        return cls(centred, centred.pow(2).sum(-1), weights, norm.weight.detach(), norm.bias.detach(), norm.eps)

    def pooled(self, coefficients: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """The mean over real tokens of LayerNorm(c_t + a_e s_et) for E edits at once, with
        coefficients (B, L, E, R) holding s_et and a (E, width, R): (E, B, width). The edits
        share one read of `centred`, which is what a step costs."""
        a_centred = a - a.mean(1, keepdim=True)
        edits, rank = coefficients.shape[2:]
        cross = (self.centred @ a_centred.permute(1, 0, 2).reshape(-1, edits * rank)).view(coefficients.shape)
        quadratic = torch.einsum("bler,ers,bles->ble", coefficients, a_centred.transpose(1, 2) @ a_centred, coefficients)
        variance = (self.squared.unsqueeze(-1) + 2 * (coefficients * cross).sum(-1) + quadratic) / self.centred.shape[-1]
        w = self.weights.unsqueeze(-1) * torch.rsqrt(variance + self.eps)  # (B, L, E)
        core = torch.bmm(w.transpose(1, 2), self.centred)  # (B, E, width)
        core = core + torch.einsum("ble,bler,edr->bed", w, coefficients, a_centred)
        return (core * self.gamma + self.weights.sum(1)[:, None, None] * self.beta).transpose(0, 1)
