"""Builders of docs/performance.md: the JSON of `rledit bench --json` (rledit_ray/bench.py)
and pytest's summary line."""
from __future__ import annotations

import os
import re

from .formatting import duration, md_table, thousands
from .outputs import Outputs


def edited_modules(settings: dict) -> str:
    """The modules a bench config edits, from its parameters (fc1.weight, fc1.bias: fc1)."""
    modules = dict.fromkeys(e.rsplit(".", 1)[0] if e.endswith((".weight", ".bias")) else e for e in settings["edit"])
    return ",".join(modules)


def _order(configs: list[dict]) -> list[dict]:
    rank = {"heavy": 0, "default": 1}
    return sorted(configs, key=lambda c: rank.get(c["name"], 2))


def _forward_ms(steps_per_s: float) -> str:
    ms = 1e3 / steps_per_s
    return f"{ms:.1f}" if ms >= 1 else f"{ms:.2f}"


def bench_table(o: Outputs) -> str:
    """docs/performance.md, from `rledit bench --json` (rledit_ray/bench.py's result)."""
    result = o.last_json(0)
    rows, scaling, driver, ppo = [], [], [], []
    for c in _order(result["configs"]):
        cpu = c["cpu_clock"]
        label = f"{c['name']} ({edited_modules(c['settings'])}, {c['settings']['samples_per_set']} per set)"
        batch4 = next((b for b in c["batches"] if b["envs"] == 4), None)
        best = c["best_rllib"]
        ratios = [r["rllib_over_world"] for r in c["rllib"]]
        rows.append([label, thousands(c["limit_steps_per_s"]), thousands(c["world_steps_per_s"]),
                     f"{c['world_over_limit']:.2f}, {cpu['world_over_limit']:.2f}",
                     f"{batch4['over_limit']:.2f}" if batch4 else "n/a",
                     f"{cpu['overhead_us_per_step'] / 1e3:.2f} ms beside a "
                     f"{_forward_ms(cpu['limit_steps_per_s'])} ms forward pass",
                     f"{thousands(best['rllib_steps_per_s'])} ({best['runners']} runners x {best['envs_per_runner']} "
                     f"{best['vectorize']})" if best else "n/a",
                     f"{min(ratios):.2f}-{max(ratios):.2f}" if ratios else "n/a"])
        scaling += [[c["name"], str(r["samples_per_set"]), f"{r['world_over_limit']:.2f}"] for r in c["samples_scaling"]]
        driver += [[c["name"], str(r["envs_per_runner"]), thousands(r["rllib_steps_per_s"]), f"{r['rllib_over_world']:.2f}"]
                   for r in c["rllib"] if r["runners"] == 0 and r["vectorize"] == "batched"]
        p = c["ppo_iteration"]
        if p:
            ppo.append([c["name"], str(p["env_steps"])] + [f"{p[k]:.1f} s" if p[k] is not None else "n/a"
                                                           for k in ("total_s", "sampling_s", "learning_s")])
    n = max((len(c["rllib"]) for c in result["configs"]), default=0)
    text = md_table(["config", "limit steps/s", "world steps/s", "world / limit (wall, CPU clock)",
                     "WorldBatch of 4 / limit", "overhead per step (CPU)", "best RLlib steps/s",
                     f"RLlib / world, all {n} settings"], rows)
    text += "\n\nReward samples (world / limit, wall clock):\n\n" + md_table(
        ["config", "reward samples per set", "world / limit"], scaling)
    if driver:
        text += "\n\nRLlib sampling on the driver's own runner (0 remote runners, batched sub-envs):\n\n" + md_table(
            ["config", "sub-envs", "RLlib steps/s", "RLlib / world"], driver)
    if ppo:
        text += "\n\nOne PPO iteration (median):\n\n" + md_table(
            ["config", "env steps", "total", "sampling", "learning"], ppo)
    return text


def world_only_table(o: Outputs) -> str:
    """docs/performance.md, from `rledit bench --world-only --json` (first step); further
    bench steps of one config are repeats of it; a pytest step adds its summary line."""
    result = o.last_json(0)
    rows, scaling = [], []
    for c in _order(result["configs"]):
        cpu = c["cpu_clock"]
        rows.append([f"{c['name']} ({edited_modules(c['settings'])}, {c['settings']['samples_per_set']} per set, "
                     f"{c['settings']['device']})", thousands(c["limit_steps_per_s"]), thousands(c["world_steps_per_s"]),
                     f"{c['world_over_limit']:.2f}", ", ".join(f"{b['envs']}: {thousands(b['steps_per_s'])} steps/s, "
                                                              f"{b['over_limit']:.2f}" for b in c["batches"]) or "n/a",
                     f"{cpu['overhead_us_per_step'] / 1e3:.2f} ms beside a {_forward_ms(cpu['limit_steps_per_s'])} ms "
                     "forward pass"])
        scaling += [[c["name"], str(r["samples_per_set"]), thousands(r["limit_steps_per_s"]),
                     thousands(r["world_steps_per_s"]), f"{r['world_over_limit']:.2f}"] for r in c["samples_scaling"]]
    text = md_table(["config", "limit steps/s", "world steps/s", "world / limit", "WorldBatch of M: steps/s, / limit",
                     "overhead per step (CPU)"], rows)
    text += "\n\n" + md_table(["config", "reward samples per set", "limit steps/s", "world steps/s", "world / limit"],
                              scaling)
    repeats = []
    for i, step in enumerate(o.table.steps[1:], start=1):
        if step.command.startswith("rledit bench"):
            c = o.last_json(i)["configs"][0]
            last = c["samples_scaling"][-1] if c["samples_scaling"] else None
            repeats.append([step.label, f"{c['world_over_limit']:.2f}",
                            f"{last['world_over_limit']:.2f} ({last['samples_per_set']} per set)" if last else "n/a"])
        else:
            summary = next((line for line in reversed(o.stdout(i).splitlines()) if re.search(r"\d+ (passed|failed)", line)),
                           "no summary line")
            text += f"\n\n`{step.command}`: {summary.strip('= ')}"
    if repeats:
        text = text + "\n\n" + md_table(["run", "world / limit", "its scaling row, world / limit"], repeats)
    return text


PYTEST_COUNTS = re.compile(r"(\d+) (passed|failed|skipped|deselected|errors?|xfailed|xpassed)")


def test_suite_table(o: Outputs) -> str:
    """docs/performance.md: `make test` in a fresh clone (step 1, install included), then
    `make test-quick` in the same clone (step 2, its .venv already there); pytest's summary line
    of each."""
    rows = []
    # (the step whose pytest line the row reads, the steps its wall time counts: the clone too for `make test`)
    for i, timed, label in ((1, (0, 1), "`make test` (install included)"), (2, (2,), "`make test-quick` (the same .venv)")):
        line = next((text for text in reversed(o.stdout(i).splitlines()) if PYTEST_COUNTS.search(text)), "")
        counts = {kind.rstrip("s") if kind.startswith("error") else kind: n for n, kind in PYTEST_COUNTS.findall(line)}
        tests = re.search(r"in ([\d.]+)s", line)
        wall = sum(o.seconds(j) or 0 for j in timed)
        rows.append([label, duration(wall), duration(float(tests.group(1))) if tests else "n/a",
                     counts.get("passed", "0"), counts.get("skipped", "0"), counts.get("deselected", "0"),
                     counts.get("failed", "0")])
    return md_table([f"from a fresh clone, {os.cpu_count()} CPU cores", "wall time", "the tests", "passed",
                     "skipped", "deselected (slow)", "failed"], rows)


def time_to_edit_table(o: Outputs) -> str:
    """docs/performance.md, from `benchmarks/time_to_edit.py --json` (the last step), formatted
    by the benchmark's own table writer."""
    from rledit_ray.time_to_edit import format_table

    return format_table(o.last_json(len(o.table.steps) - 1))
