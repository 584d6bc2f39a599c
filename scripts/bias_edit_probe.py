"""What a direct gradient optimisation of the bias reward reaches on held-out test.

Not the product (the product is the RL agent): a measurement of how much the worlds' edit
parameterisation can gain when the reward is followed exactly, to set the RL defaults.
It builds the same world `rledit train --task bias` builds (same reward samples, same
frozen prefix), edits the same layers with a free low-rank edit of the world's form
(mask: W0 * clamp(1 + U V^T); shift: W0 + s * U V^T), runs Adam on the world's reward
(`BiasTask.reward_tensors`), chooses the checkpoint with the task's validation
`selection_score` and prints the test metrics of that checkpoint.

    PYTHONPATH=. RLEDIT_CACHE_DIR=/work/cache-bias python scripts/bias_edit_probe.py \
        --world mask --edit fc1 --rank 4 --objective bias_score --temperature 0.05

Defaults are those of `rledit train --task bias`. Measured numbers: docs/bias.md.
"""
from __future__ import annotations

import argparse
import json
import time

import torch
from torch.func import functional_call

from rledit_ray.build import build_world
from rledit_ray.config import build_config

HEADLINE = ("overall_auc", "bias_score", "worst_group_bias_auc", "counterfactual_gap")


def main() -> None:
    args = _parse_args()
    cfg = _config(args)
    torch.manual_seed(args.seed)
    world = build_world(cfg)
    before = world.task_metrics(pools=("validation", "test"))
    factors = _factors(world, args.rank)
    opt = torch.optim.Adam([t for pair in factors for t in pair], lr=args.lr)
    reh = world.reward_h.clone()  # inference tensors cannot enter autograd
    ref = world.reference_logits.clone()
    started = time.perf_counter()
    best, rows = _optimise(world, factors, opt, reh, ref, args, cfg.mask_bounds)
    report(args, f"{args.world} {args.edit} r{args.rank} {args.objective} tau{args.temperature} "
                 f"uc{args.utility_coef} n{args.per_set} {args.pools} lr{args.lr}", before, best, rows, started)


def _parse_args() -> argparse.Namespace:
    base = build_config({"task": "bias"})  # the defaults `rledit train --task bias` uses
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world", default="mask", choices=("mask", "shift"))
    ap.add_argument("--edit", default="fc2", help="comma-separated layers, e.g. fc1,fc2")
    ap.add_argument("--rank", type=int, default=1)
    ap.add_argument("--objective", default=base.bias.objective)
    ap.add_argument("--temperature", type=float, default=base.bias.temperature)
    ap.add_argument("--utility-coef", type=float, default=base.reward.utility_coef)
    ap.add_argument("--objective-coef", type=float, default=base.reward.objective_coef)
    ap.add_argument("--per-set", type=int, default=base.samples.per_set)
    ap.add_argument("--pools", default=",".join(base.bias.reward_pools))
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--lr", type=float, default=0.02)
    ap.add_argument("--eval-every", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    return ap.parse_args()


def _config(args: argparse.Namespace):
    """The run config `rledit train --task bias` would build from these settings."""
    return build_config({
        "task": "bias", "world": args.world, "edit": args.edit.split(","), "rank": args.rank, "seed": args.seed,
        "samples": {"per_set": args.per_set},
        "reward": {"utility_coef": args.utility_coef, "objective_coef": args.objective_coef},
        "bias": {"objective": args.objective, "temperature": args.temperature,
                 "reward_pools": args.pools.split(",")},
    })


def _factors(world, rank: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(U, V) of each edited layer: U zero (the edit starts at the original weights), V small."""
    factors = []
    for layer in world.layers:
        u = torch.zeros(layer.rows, rank, requires_grad=True)
        v = (0.1 * torch.randn(layer.cols, rank)).requires_grad_(True)
        factors.append((u, v))
    return factors


def _edited(world, factors, kind: str, bounds) -> list[torch.Tensor]:
    """The edited weight matrices, in the world's form (mask: W0 * clamp(1 + U V^T); shift:
    W0 + s * U V^T)."""
    lo, hi = bounds
    matrices = []
    for (u, v), w0, scale in zip(factors, world.original, world.scales):
        d = u @ v.T
        matrices.append(w0 * (1 + d).clamp(lo, hi) if kind == "mask" else w0 + scale * d)
    return matrices


def _as_params(world, matrices) -> dict[str, torch.Tensor]:
    """The edited matrices as the model's parameters (weight columns, then the bias column)."""
    params = {}
    for layer, mat in zip(world.layers, matrices):
        start = 0
        if layer.weight is not None:
            fan_in = layer.weight[0].numel()
            params[f"{layer.module_name}.weight"] = mat[:, :fan_in].reshape(layer.weight.shape)
            start = fan_in
        if layer.bias is not None:
            params[f"{layer.module_name}.bias"] = mat[:, start]
    return params


def _evaluate(world, factors, kind: str, bounds, step: int) -> dict:
    """Write the edit into the network; its test and validation metrics and selection score."""
    with torch.no_grad():
        for layer, mat in zip(world.layers, _edited(world, factors, kind, bounds)):
            layer.write(mat)
    m = world.task_metrics(pools=("validation", "test"))
    m["selection_score"] = world.task.selection_score(m)
    return {"step": step, **{k: m[k] for k in HEADLINE}, **{f"{k}_val": m[f"{k}_val"] for k in HEADLINE},
            "selection_score": m["selection_score"]}


def _optimise(world, factors, opt, reh, ref, args: argparse.Namespace, bounds) -> tuple[dict, list[dict]]:
    """Adam on the world's reward, evaluated every eval_every steps: (the row chosen on
    validation, every row)."""
    best, rows = None, []
    for step in range(args.steps + 1):
        if step % args.eval_every == 0:
            rows.append(_evaluate(world, factors, args.world, bounds, step))
            if best is None or rows[-1]["selection_score"] > best["selection_score"]:
                best = rows[-1]
        if step == args.steps:
            break
        params = _as_params(world, _edited(world, factors, args.world, bounds))
        logits = _suffix_call(world, params, reh)
        terms = world.task.reward_tensors(logits, ref)
        loss = -(args.utility_coef * terms["utility"] + args.objective_coef * terms["objective"])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return best, rows


def report(args: argparse.Namespace, label: str, before: dict, best: dict, rows: list[dict], started: float) -> None:
    """One JSON line (scripts/reproduce.py reads it), then a one-line summary starting with
    `label` (the probe's settings). scripts/bias_encoder_probe.py reports the same way."""
    oracle = max(rows, key=lambda r: r["bias_score"])
    out = {"args": vars(args), "seconds": round(time.perf_counter() - started, 1),
           "before": {k: before[k] for k in HEADLINE}, "chosen_on_validation": best,
           "best_bias_score_on_test (oracle, not a result)": oracle}
    print(json.dumps(out))
    d = {k: 100 * (best[k] - before[k]) for k in HEADLINE}
    print(f"# {label}: step {best['step']} test dAUC {d['overall_auc']:+.2f} "
          f"dbias {d['bias_score']:+.2f} dworst {d['worst_group_bias_auc']:+.2f} | oracle dbias "
          f"{100 * (oracle['bias_score'] - before['bias_score']):+.2f}")


def _suffix_call(world, params, h):
    """Run the world's suffix (children after the frozen prefix) with edited parameters."""
    suffix = world.split.sequential_suffix
    out, in_suffix = h, {id(m) for m in suffix.children()} if suffix is not None else set()
    for name, module in world.model.named_children():
        if id(module) not in in_suffix:
            continue
        own = {k.split(".", 1)[1]: v for k, v in params.items() if k.split(".", 1)[0] == name}
        out = functional_call(module, own, (out,)) if own else module(out)
    return out


if __name__ == "__main__":
    main()
