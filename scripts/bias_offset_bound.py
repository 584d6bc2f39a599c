"""How far per-group score transforms alone can move the Jigsaw bias score (a bound, not a result).

A per-group offset (or offset and scale) of the head's standardised logit margin leaves every
Subgroup AUC unchanged and trades BPSN against BNSP AUC; it is what most head edits that
generalise amount to. This fits one per group with Adam on the soft bias score of a pool
(the test split itself gives the bound; the reward pools give what such a transform
learnt from training data reaches) and prints the test change in points.

    PYTHONPATH=. RLEDIT_CACHE_DIR=/work/cache-bias python scripts/bias_offset_bound.py
"""
from __future__ import annotations

import torch

from rledit_ray.build import build_world
from rledit_ray.config import build_config
from rledit_ray.tasks import bias_metrics as bm
from rledit_ray.tasks.bias import _concat, soft_auc, soft_power_mean

KEYS = ("overall_auc", "bias_score", "worst_group_bias_auc")


def soft_bias_score(z, y, membership, tau):
    pos, neg, per = y == 1, y == 0, {k: [] for k in bm.GROUP_AUCS}
    for g in range(membership.shape[1]):
        m = membership[:, g]
        per["subgroup_auc"].append(soft_auc(z, m & pos, m & neg, tau))
        per["bpsn_auc"].append(soft_auc(z, ~m & pos, m & neg, tau))
        per["bnsp_auc"].append(soft_auc(z, m & pos, ~m & neg, tau))
    return torch.stack([soft_power_mean(torch.stack(v)) for v in per.values()]).mean(), soft_auc(z, pos, neg, tau)


def main(tau: float = 0.1, steps: int = 400) -> None:
    world = build_world(build_config({"task": "bias"}))
    data = world.task.data

    def margin(pool):
        with torch.no_grad():
            logits = world.model(pool.x)
        return logits[:, 1] - logits[:, 0]

    def transformed(pool, offset, log_scale):
        z, group = margin(pool), pool.membership.float().argmax(1)  # RedditBias: one group per row
        mean, sd = z.mean(), z.std()
        return (z - mean) / sd * log_scale[group].exp() + offset[group]

    def test_report(z):
        return bm.bias_report(torch.sigmoid(z).numpy(), data.test.y.numpy(), data.test.membership.numpy(), data.groups)

    before = test_report(margin(data.test))
    for source, pool in (("test (bound)", data.test), ("fit+reward", _concat([data.fit, data.reward]))):
        for kind in ("offset", "offset+scale"):
            for utility_coef in (0.0, 1.0):
                offset = torch.zeros(len(data.groups), requires_grad=True)
                log_scale = torch.zeros(len(data.groups), requires_grad=kind != "offset")
                opt = torch.optim.Adam([offset, log_scale] if kind != "offset" else [offset], lr=0.02)
                for _ in range(steps):
                    bias, utility = soft_bias_score(transformed(pool, offset, log_scale), pool.y, pool.membership, tau)
                    loss = -(bias + utility_coef * utility)
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                with torch.no_grad():
                    after = test_report(transformed(data.test, offset, log_scale))
                deltas = " ".join(f"d{k} {100 * (after[k] - before[k]):+.2f}" for k in KEYS)
                print(f"per-group {kind:12s} fitted on {source:12s} utility_coef {utility_coef}: {deltas}")


if __name__ == "__main__":
    main()
