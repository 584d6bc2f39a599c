"""Serving and scoring edit requests with one generalist policy (config `generalist:`).

A request is a forget class. `serve` applies a policy to one request in a world built with
requests (worlds/base.py) and times it; the other functions score a policy over several
requests: validation rows for checkpoint choice (training requests only) and the final
per-request table (training and held-out requests, validation and test pools).
"""
from __future__ import annotations

import time

import numpy as np

from rledit_ray.worlds.rollout import run_episode

POOLS = ("validation", "test")


def serve(world, policy, k: int) -> tuple[dict, float]:
    """Edit the world's network for request k with `policy`: (final reward terms, seconds).
    The seconds cover everything request-specific: gathering the request's reward samples and
    their activations (cached after a request's first use), the T policy steps and env steps."""
    started = time.perf_counter()
    world.use_request(k)
    terms = run_episode(world, policy)
    return terms, time.perf_counter() - started


def no_edit(world):
    return lambda obs: np.zeros(world.action_space.shape, np.float32)


def per_request(world, policy, classes, pools=POOLS) -> dict[int, dict]:
    """{k: task metrics after serving request k}, plus `edit_seconds` of each edit."""
    out = {}
    for k in classes:
        terms, seconds = serve(world, policy, k)
        out[int(k)] = {**world.task_metrics(pools=pools), "edit_seconds": seconds,
                       "final_reward_terms": dict(terms)}
    return out


def mean_over(results: dict[int, dict]) -> dict[str, float]:
    """Scalar metrics averaged over requests, plus the worst forget and retain accuracies."""
    keys = [k for k, v in next(iter(results.values())).items() if isinstance(v, float)]
    out = {k: float(np.mean([r[k] for r in results.values()])) for k in keys}
    for key in ("forget_val_acc", "forget_acc"):
        if key in out:
            out[f"{key}_max"] = max(r[key] for r in results.values())
    for key in ("retain_val_acc", "retain_acc"):
        if key in out:
            out[f"{key}_min"] = min(r[key] for r in results.values())
    return out


def validation_row(world, policy, train_classes) -> dict:
    """What checkpoint choice sees: validation metrics of the training requests only."""
    results = per_request(world, policy, train_classes, pools=("validation",))
    row = mean_over(results)
    row.pop("edit_seconds", None)
    row["per_request_val"] = {str(k): [r["forget_val_acc"], r["retain_val_acc"]] for k, r in results.items()}
    return row


def met_stop(row: dict, training) -> bool:
    """Every training request meets the validation targets."""
    if training.stop_forget_acc is None or training.stop_retain_acc is None or "forget_val_acc_max" not in row:
        return False
    return row["forget_val_acc_max"] <= training.stop_forget_acc and row["retain_val_acc_min"] >= training.stop_retain_acc


def progress(row: dict) -> str:
    if "forget_val_acc" not in row:
        return ""
    return (f" | train requests val forget mean {row['forget_val_acc']:.2%} max {row['forget_val_acc_max']:.2%}"
            f" retain mean {row['retain_val_acc']:.2%} min {row['retain_val_acc_min']:.2%}")


def request_table(results: dict, heldout) -> str:
    """Markdown: one row per request (test pool), held-out ones marked."""
    lines = ["| request (forget class) | held out | forget (test) | retain (test) | forget (val) | retain (val) | edit s |",
             "|---|---|---|---|---|---|---|"]
    for k in sorted(results, key=int):
        r = results[k]
        lines.append(f"| {k} | {'yes' if int(k) in heldout else 'no'} | {r['forget_acc']:.2%} | {r['retain_acc']:.2%} | "
                     f"{r['forget_val_acc']:.2%} | {r['retain_val_acc']:.2%} | {r['edit_seconds']:.3f} |")
    return "\n".join(lines)


def report_section(metrics: dict) -> str:
    """The run report's per-request table (after = the mean over held-out requests above)."""
    heldout = set(metrics["heldout_classes"])
    return "\n".join([
        f"## Every request (trained on {metrics['train_classes']}, held out {sorted(heldout)})", "",
        "The table above averages the held-out requests. Checkpoint chosen on the validation split of the "
        "training requests only; held-out requests were never trained on nor used for selection.", "",
        request_table(metrics["per_request"], heldout)])
