"""ShiftWorld's step on MiniLM's last FFN output, three ways side by side.

How to run (after `make setup`; ~3 minutes on 2 cores, most of it building the world):

    .venv/bin/python scripts/factored_step.py [--per-set N]

What to expect: one line per way with the median seconds per world step (reset + one step, as
an ES candidate costs) on the edit of `configs/bias_encoder_es.yaml` (rank 2, factor_basis
[32, 768]) with its reward texts (1,024 per cell: the whole pool) or N per cell, and the largest
difference of its logits from the full product's (float rounding):
- "closed form": the low-rank term through the LayerNorm and the pooling in closed form
  (targets/pooled_tail.py), what a run uses;
- "replay": the layer's cached original output plus the low-rank term, the rest of the network
  replayed through its own code (targets/memo.py);
- "full product": the edited weights written into the layer and its whole matrix product;
and the closed form's seconds per edit for its logits alone, one edit at a time and 8 scored
together, as the 8 sub-envs of an EnvRunner score ES's candidates (worlds/batched.py).
The numbers of docs/deep-edits.md ("Bias through the encoder") come from this script.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import yaml

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "bias_encoder_es.yaml"


def main() -> None:
    from rledit_ray.build import build_world
    from rledit_ray.config import build_config

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-set", type=int, default=None, help="reward texts per (group, label) cell "
                    "(default: the config's)")
    args = ap.parse_args()
    settings = yaml.safe_load(CONFIG.read_text())
    if args.per_set is not None:
        settings["samples"] = {"per_set": args.per_set}
    torch.set_num_threads(settings["torch_threads"])
    world = build_world(build_config(settings))
    action = np.random.default_rng(0).uniform(-0.3, 0.3, world.action_space.shape).astype(np.float32)
    factored = type(world).low_rank_edit

    def seconds_per_step(n: int = 10) -> float:
        world.reset(seed=0)
        world.step(action)  # warm-up: the first factored step caches what the edit reads
        start = time.perf_counter()
        for _ in range(n):
            world.reset(seed=0)
            world.step(action)
        return (time.perf_counter() - start) / n

    ways = {"closed form": (True, True), "replay": (True, False), "full product": (False, False)}
    times, logits = {name: [] for name in ways}, {}
    for _ in range(3):
        for name, (low_rank, closed_form) in ways.items():
            # The instance attribute shadows the method: None makes the world write and use its weights.
            world.low_rank_edit = (lambda: factored(world)) if low_rank else (lambda: None)
            world.split.closed_form = closed_form
            times[name].append(seconds_per_step())
            logits[name] = world.reward_logits()
    world.low_rank_edit, world.split.closed_form = (lambda: factored(world)), True
    world.reset(seed=0)
    world.step(action)
    per_edit = {}  # edits scored together -> seconds per edit, the logits alone
    for n in (1, 8):
        edits, per_edit[n] = [world.low_rank_edit()] * n, []
        for _ in range(3):
            start = time.perf_counter()
            world.split.closed_form_suffixes(world.reward_h, edits)
            per_edit[n].append((time.perf_counter() - start) / n)
    print(f"{world.task.n_samples} reward texts, {sum(x.shape[0] * x.shape[-1] for x, _ in world.reward_h.chunks)} "
          f"token positions")
    for name in ways:
        diff = float((logits[name] - logits["full product"]).abs().max())
        print(f"{name}: {statistics.median(times[name]):.3f} s/step, logits within {diff:.2g} of the full product")
    print("closed form, the logits alone: " + ", ".join(
        f"{n} edit{'s together' if n > 1 else ''} {statistics.median(t):.3f} s per edit" for n, t in per_edit.items()))


if __name__ == "__main__":
    main()
