"""`rledit compare`: RL edits and hand-designed baselines, side by side, for either task.

Every method sees the same target network, the same splits and the same seed, and is scored
by the same code (rledit_ray/evaluation.py). Method names:
- `original`: the unedited target (a reference row);
- the task's baselines by their registry names (rledit_ray/baselines: retrain, finetune, ...
  for unlearning; reweighted_finetune, leace for bias);
- `rl_<world>` (rl_mask, rl_shift): an RL policy trained with `rledit train` on the task's
  default layer; `rl_<world>_<layer>` (e.g. rl_mask_fc1) edits that layer instead;
  `es_<world>[_<layer>]` the same trained with evolution strategies (`--algorithm es`).

The output folder holds one JSON per (method, seed) under rows/ (written as each finishes, so
an interrupted comparison resumes where it stopped), the RL run directories under runs/, and
comparison.csv / comparison.md / comparison.png, rewritten after every row. One folder holds
one task's comparison.
"""
from __future__ import annotations

import copy
import csv
import io
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from rledit_ray.atomic import save_figure, write_json, write_text
from rledit_ray.baselines import BaselineSettings, baselines_for, run_baseline
from rledit_ray.compare_checks import RL_PATTERN, SETTINGS_FILE, check_arguments, check_reused_run, check_settings
from rledit_ray.config import build_config, read_yaml_mapping, with_overrides
from rledit_ray.errors import UserError
from rledit_ray.evaluation import check_metrics, evaluate_bias, evaluate_unlearning, gap_to_retrain
from rledit_ray.figures import pyplot, tradeoff_figure
from rledit_ray.outputs import COMPARISON, check_output, make_output
from rledit_ray.progress import Progress
from rledit_ray.worlds.layers import resolve_edit_layers


def _pct(row: dict, key: str) -> str:
    """A progress line's percentage; n/a for a test `--metrics targets` leaves out."""
    return f"{row[key]:.2%}" if key in row else "n/a"


@dataclass(frozen=True)
class CompareSpec:
    """What differs between the tasks' comparisons: methods, columns, plot and note."""

    default_methods: tuple[str, ...]
    columns: tuple[tuple[str, str, bool], ...]  # (column, label, is a fraction), in table order
    plot_metrics: tuple[tuple[str, str], ...]
    plot_title: str
    note: str
    summary: Callable[[dict], str]  # one progress line's metrics


SPECS = {
    "unlearning": CompareSpec(
        default_methods=("original", *baselines_for("unlearning"), "rl_mask", "rl_shift", "rl_mask_fc1",
                         "es_mask_fc1", "es_shift_fc1"),
        columns=(
            ("ua", "UA (1 - forget train acc)", True),
            ("retain_train_acc", "RA (retain train acc)", True),
            ("retain_acc", "TA (retain test acc)", True),
            ("forget_acc", "forget test acc", True),
            ("mia_efficacy", "MIA efficacy", True),
            ("probe_acc", "probe recovery", True),
            ("relearn_steps", "relearn steps", False),
            ("gap_to_retrain", "avg gap to retrain", True),
            ("time_s", "time (s)", False),
        ),
        plot_metrics=(("ua", "UA"), ("retain_acc", "TA"), ("mia_efficacy", "MIA"), ("probe_acc", "probe")),
        plot_title="unlearning metrics (mean ± sd over seeds)",
        note="in percent (time in seconds). "
             "UA/RA/forget on the fit pool's forget/retain sets, TA and forget test acc on held-out test images; "
             "MIA efficacy: share of the forget set a confidence attack calls non-member (retrain ~100); "
             "probe recovery: balanced test accuracy of a linear probe for the forgotten class on the "
             "penultimate features (50 = gone; for an fc1 edit the features after the edited layer); relearn steps: "
             "full-batch SGD steps (lr 1e-4, 64 forget-set images, every weight) until forget test acc passes "
             "50% again (201 = not within 200); gap: mean |UA, RA, TA, MIA - retrain's| for the same seed. "
             "RL time is the whole `rledit train` run (PPO or ES training plus its evaluations).",
        summary=lambda r: (f"forget train {r['forget_train_acc']:.2%} test {r['forget_acc']:.2%} | "
                           f"retain test {r['retain_acc']:.2%} | MIA {_pct(r, 'mia_efficacy')} | "
                           f"probe {_pct(r, 'probe_acc')}"),
    ),
    "bias": CompareSpec(
        default_methods=("original", *baselines_for("bias"), "rl_mask", "rl_shift"),
        columns=(
            ("overall_auc", "overall AUC", True),
            ("bias_score", "bias score", True),
            ("final_score", "final score", True),
            ("worst_group_bias_auc", "worst-group BPSN/BNSP AUC", True),
            ("worst_group_acc", "worst-group acc", True),
            ("counterfactual_gap", "counterfactual gap", True),
            ("group_probe_acc", "group probe", True),
            ("time_s", "time (s)", False),
        ),
        plot_metrics=(("overall_auc", "overall AUC"), ("bias_score", "bias score"),
                      ("worst_group_bias_auc", "worst-group AUC"), ("worst_group_acc", "worst-group acc")),
        plot_title="bias metrics on test (mean ± sd over seeds)",
        note="in points (0-100) on the held-out test split (time in seconds). Worst-group: minimum over "
             "identity groups of BPSN and BNSP AUC; counterfactual gap: mean |p(x) - p(x with the identity "
             "term swapped)| (lower is better); group probe: balanced accuracy of a linear probe naming the "
             "identity group from the head's penultimate features (chance = 100 / number of groups). "
             "Every method trains on the train side only (fit + reward pools) and picks its stopping point "
             "on validation with the score RL checkpoints are chosen by. "
             "RL time is the whole `rledit train` run (PPO or ES training plus its evaluations).",
        summary=lambda r: (f"AUC {r['overall_auc']:.2%} | bias {r['bias_score']:.2%} | "
                           f"worst-group AUC {r['worst_group_bias_auc']:.2%} | gap {r['counterfactual_gap']:.3f} | "
                           f"group probe {_pct(r, 'group_probe_acc')}"),
    ),
}


def spec_of(task: str) -> CompareSpec:
    if task not in SPECS:
        raise UserError(f"compare: unknown task '{task}': choose {' or '.join(SPECS)}")
    return SPECS[task]


def default_methods(task: str) -> list[str]:
    return list(spec_of(task).default_methods)


def check_methods(methods: list[str], task: str = "unlearning") -> list[str]:
    baselines = baselines_for(task)
    for m in methods:
        if m != "original" and m not in baselines and not RL_PATTERN.match(m):
            raise UserError(f"unknown method '{m}' for --task {task}: choose original, {', '.join(baselines)}, "
                            f"rl_mask, rl_shift, rl_<world>_<layer> or es_<world>[_<layer>]")
    return list(dict.fromkeys(methods))


def rl_config(base: dict, method: str, seed: int, iterations: int | None):
    algorithm, world, layer = RL_PATTERN.match(method).groups()
    over = {"world": world, "seed": seed, **({"edit": [layer]} if layer else {}),
            **({"agent.algorithm": "es"} if algorithm == "es" else {}),
            **({"training.iterations": iterations} if iterations else {})}
    return build_config(with_overrides(base, over), where=f"config of {method}")


@dataclass
class Harness:
    """One task's target, the data its baselines take, and its evaluation."""

    target: torch.nn.Module
    data: object  # UnlearningSplits or BiasTask
    evaluate: Callable[[torch.nn.Module, int], dict]
    description: str


def _harness(cfg, metrics: str = "all") -> Harness:
    from rledit_ray.build import build_parts

    parts = build_parts(cfg)  # the path `rledit train` takes: same data, splits, target, task
    target, task = parts.model, parts.task
    if cfg.task == "bias":
        from rledit_ray.targets import full_model_scores

        # The unedited head's validation AUC is the task's reference for every later
        # selection (a baseline's epoch, as an RL run's checkpoint).
        task.metrics(full_model_scores(target), pools=("validation",))
        return Harness(target, task, lambda model, seed: evaluate_bias(model, task, seed=seed, metrics=metrics),
                       f"{cfg.dataset}, groups {', '.join(task.data.groups)}")
    splits = task.splits
    return Harness(target, splits, lambda model, seed: evaluate_unlearning(model, splits, seed=seed, metrics=metrics),
                   f"{cfg.dataset}, forget {list(cfg.forget_classes)}")


def _edit(method: str, seed: int, harness, base: dict, cfg, rl_iterations, rl_run, out: Path, progress):
    """(the edited network, seconds, extra row fields) of one method and seed."""
    if method == "original":
        return harness.target, 0.0, {}
    if RL_PATTERN.match(method):
        return _rl_edit(base, method, seed, rl_iterations, harness.target, out, rl_run, progress)
    model, seconds = run_baseline(method, harness.target, harness.data,
                                  BaselineSettings(seed=seed, dataset=cfg.dataset), task=cfg.task)
    return model, seconds, {}


def run_compare(out: str | Path, task: str = "unlearning", dataset: str | None = None,
                data_root: str | None = None, data_source: str | None = None,
                forget_classes: list[int] | None = None, methods: list[str] | None = None,
                seeds: int = 3, first_seed: int = 0, config_path: str | None = None, rl_iterations: int | None = None,
                rl_runs: dict[tuple[str, int], str] | None = None, progress=print,
                overrides: dict | None = None, metrics: str = "all") -> Path:
    """Run every method for seeds first_seed..first_seed+seeds-1; returns the output folder.
    Several processes may share one folder with disjoint seeds (rows are per-seed files).
    metrics="targets": only the metrics the task's targets are stated in (rledit_ray/evaluation.py)."""
    spec = spec_of(task)
    methods = check_methods(methods or list(spec.default_methods), task)
    check_arguments(methods, seeds, first_seed, rl_iterations, rl_runs or {})
    check_metrics(metrics, "--metrics")  # before anything loads
    out = check_output(out, "--out", accept=(COMPARISON,))
    other = {r.get("task", "unlearning") for r in _read_rows(out)} - {task}
    if other:
        raise UserError(f"'{out}' holds a --task {other.pop()} comparison: choose another --out for --task {task}")
    torch.set_num_threads(1)  # tiny ops on shared cores: threads cost more than they give
    base = read_yaml_mapping(config_path) if config_path else {}
    flags = {"task": task, "dataset": dataset, "data_root": data_root, "data_source": data_source,
             "forget_classes": forget_classes}
    base = with_overrides(base, {**{k: v for k, v in flags.items() if v}, **(overrides or {})})
    cfg = build_config(base)
    settings = {"task": task, "config": cfg.model_dump(mode="json"), "rl_iterations": rl_iterations,
                "metrics": metrics}
    check_settings(out, settings)
    harness = _harness(cfg, metrics)
    for m in methods:  # refuse bad layer names before hours of work, not after
        if RL_PATTERN.match(m):
            resolve_edit_layers(harness.target, rl_config(base, m, 0, rl_iterations).edit)
    for (method, seed), run in (rl_runs or {}).items():
        check_reused_run(run, method, rl_config(base, method, seed, rl_iterations), harness.target)
    make_output(out / "rows", "--out")
    write_json(out / SETTINGS_FILE, settings)
    progress(f"compare --task {task}: {harness.description}, methods {', '.join(methods)}, "
             f"seeds {first_seed}..{first_seed + seeds - 1} -> {out}")
    started = time.perf_counter()
    bar = Progress("compare rows", total=seeds * len(methods), unit="row", lines=False)  # each row prints a line
    progress = bar.printer(progress)
    for seed in range(first_seed, first_seed + seeds):
        for method in methods:
            path = out / "rows" / f"{method}-seed{seed}.json"
            if path.is_file():
                bar.update()
                continue
            model, seconds, extra = _edit(method, seed, harness, base, cfg, rl_iterations,
                                          (rl_runs or {}).get((method, seed)), out, progress)
            row = {"task": task, "method": method, "seed": seed, "time_s": seconds, "metrics": metrics,
                   **harness.evaluate(model, seed), **extra}
            write_json(path, row)
            progress(f"seed {seed} {method:20s} {seconds:7.1f} s | {spec.summary(row)}")
            write_outputs(out)
            bar.update()
    bar.close()
    write_outputs(out)
    progress(f"compare finished in {time.perf_counter() - started:.0f} s: {out / 'comparison.md'}")
    return out


def _rl_edit(base: dict, method: str, seed: int, iterations, target, out: Path, reuse: str | None, progress):
    """Train the RL policy (or reuse a finished run) and load its edited weights."""
    from safetensors.torch import load_file

    from rledit_ray.training import train

    cfg = rl_config(base, method, seed, iterations)
    run = Path(reuse) if reuse else out / "runs" / f"{method}-seed{seed}"
    if not (run / "metrics.json").is_file():  # a reused run was checked up front (check_reused_run)
        # This folder's own row, perhaps interrupted: trained again from scratch.
        train(cfg, run, progress=lambda line: progress(f"  [{method} seed {seed}] {line}"), restart=True)
    metrics = json.loads((run / "metrics.json").read_text())
    model = copy.deepcopy(target)
    model.load_state_dict(load_file(str(run / "edited_weights.safetensors")))
    return model, float(metrics["wall_time_s"]), {"env_steps": metrics.get("env_steps"), "run_dir": str(run)}


# ----------------------------------------------------------------------------- outputs
def _read_rows(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((Path(out) / "rows").glob("*.json"))]


def load_rows(out: Path) -> list[dict]:
    rows = _read_rows(out)
    retrain = {r["seed"]: r for r in rows if r["method"] == "retrain"}
    for r in rows:
        if r.get("task", "unlearning") == "unlearning":
            # Paired with the same seed's retrain: both saw the same sampling randomness.
            r["gap_to_retrain"] = gap_to_retrain(r, retrain[r["seed"]]) if r["seed"] in retrain else float("nan")
    return rows


def write_outputs(out: Path) -> None:
    rows = load_rows(out)
    if not rows:
        return
    spec = spec_of(rows[0].get("task", "unlearning"))
    columns = [c for c, _, _ in spec.columns]
    keys = ["method", "seed", *columns,
            *sorted({k for r in rows for k in r} - {"task", "method", "seed", *columns})]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(out / "comparison.csv", buf.getvalue())
    scatter = tradeoff_figure(out, rows)
    write_text(out / "comparison.md", markdown_table(rows, spec) + f"\n\n![every method's trade-off]({scatter.name})\n")
    write_plot(out / "comparison.png", rows, spec)


def _ordered_methods(rows: list[dict], spec: CompareSpec) -> list[str]:
    order = {m: i for i, m in enumerate(spec.default_methods)}
    return sorted({r["method"] for r in rows}, key=lambda m: (order.get(m, len(order)), m))


def mean_spread(values: list[float]) -> tuple[float, float]:
    v = [x for x in values if x is not None and not math.isnan(x)]
    if not v:
        return float("nan"), float("nan")
    return float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0


def markdown_table(rows: list[dict], spec: CompareSpec) -> str:
    seeds = sorted({r["seed"] for r in rows})
    lines = ["| method | seeds | " + " | ".join(label for _, label, _ in spec.columns) + " |",
             "|---|---|" + "---|" * len(spec.columns)]
    for method in _ordered_methods(rows, spec):
        mine = [r for r in rows if r["method"] == method]
        cells = []
        for key, _, frac in spec.columns:
            mean, sd = mean_spread([r.get(key, float("nan")) for r in mine])
            if math.isnan(mean):
                cells.append("n/a")
            elif frac:
                cells.append(f"{100 * mean:.2f} ± {100 * sd:.2f}")
            else:
                cells.append(f"{mean:.1f} ± {sd:.1f}")
        lines.append(f"| {method} | {len(mine)} | " + " | ".join(cells) + " |")
    lines += ["", f"Mean ± standard deviation over seeds {', '.join(map(str, seeds))}, {spec.note}"]
    if any(r.get("metrics") == "targets" for r in rows):
        lines[-1] += " n/a: not measured (`--metrics targets` leaves out the MIA, probe and relearn tests)."
    return "\n".join(lines)


def write_plot(path: Path, rows: list[dict], spec: CompareSpec) -> None:
    plt = pyplot()

    methods = _ordered_methods(rows, spec)
    metrics = spec.plot_metrics
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.2), gridspec_kw={"width_ratios": [3, 1]})
    width = 0.8 / len(metrics)
    x = np.arange(len(methods))
    lowest = 1.0
    for i, (key, label) in enumerate(metrics):
        stats = [mean_spread([r.get(key, float("nan")) for r in rows if r["method"] == m]) for m in methods]
        lowest = min([lowest, *(s[0] - s[1] for s in stats if not math.isnan(s[0]))])
        ax1.bar(x + (i - (len(metrics) - 1) / 2) * width, [s[0] for s in stats], width,
                yerr=[s[1] for s in stats], label=label, capsize=2)
    ax1.set_xticks(x, methods, rotation=30, ha="right")
    # Bias metrics live in a narrow band (AUCs of 0.6-0.85): start the axis near it, and put
    # the legend in the empty band above the bars.
    narrow = lowest >= 0.3
    ax1.set(ylabel="fraction", ylim=(lowest - 0.05 if narrow else 0, 1.05), title=spec.plot_title)
    ax1.legend(ncol=len(metrics), fontsize=8, loc="upper left" if narrow else "lower left")
    times = [mean_spread([r["time_s"] for r in rows if r["method"] == m]) for m in methods]
    ax2.barh(x, [t[0] for t in times], xerr=[t[1] for t in times], color="gray")
    ax2.set_yticks(x, methods)
    ax2.set(xlabel="seconds (log)", title="wall time")
    if any(t[0] > 0 for t in times):
        ax2.set_xscale("log")
    ax2.invert_yaxis()
    save_figure(fig, path)
