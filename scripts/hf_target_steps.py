"""Env steps/s of a transformers classifier as the bias target, next to a full forward pass.

How to run (after scripts/make_text_classifier.py wrote the folder; ~2 minutes on 2 cores):

    .venv/bin/python scripts/hf_target_steps.py --hf-model runs/minilm-redditbias

What to expect: for each edit (the `classifier` head, and the FFN output Linear of MiniLM's
last transformer layer, in MaskWorld and in ShiftWorld) one line with how the world splits the
model ("memo": what runs before the edited layer is recorded once and replayed), the world's
steps/s with random actions, and the steps/s a full forward pass of the same reward rows would
allow: the gain from caching.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

EDITS = {
    "classifier": {"edit": ["classifier"], "samples": {"per_set": 256}},
    "last-layer FFN output": {"edit": ["bert.encoder.layer.5.output.dense"], "samples": {"per_set": 64},
                              "bias": {"pairs_per_set": 64}},
    # ShiftWorld evaluates the layer as its cached original output plus the low-rank term.
    "last-layer FFN output, shift": {"edit": ["bert.encoder.layer.5.output.dense"], "world": "shift",
                                     "samples": {"per_set": 64}, "bias": {"pairs_per_set": 64}},
}


def rate(step, seconds: float) -> float:
    step()  # warm-up
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        step()
        done += 1
    return done / (time.perf_counter() - start)


def main() -> None:
    from rledit_ray.build import build_world
    from rledit_ray.config import build_config
    from rledit_ray.targets.split import call_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hf-model", required=True, help="a save_pretrained folder")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per measure (default 10)")
    args = parser.parse_args()
    for name, changes in EDITS.items():
        cfg = build_config({"task": "bias", "target": {"hf": args.hf_model}, **changes})
        world = build_world(cfg)
        world.reset(seed=0)
        rng = np.random.default_rng(0)
        x = world.task.reward_x

        def world_step(world=world, rng=rng):
            world.step(rng.uniform(-1, 1, world.action_space.shape).astype(np.float32))

        def full_forward(world=world, x=x):
            with torch.inference_mode():
                call_model(world.model, x)

        steps, full = rate(world_step, args.seconds), rate(full_forward, args.seconds)
        print(f"{name}: edit {cfg.edit[0]}, {world.action_space.shape[0]} action dims, {len(x)} reward rows x "
              f"{x.shape[-1]} tokens, split '{world.split.kind}': world {steps:.1f} steps/s, full forward "
              f"{full:.2f}/s ({steps / full:.0f}x)", flush=True)


if __name__ == "__main__":
    main()
