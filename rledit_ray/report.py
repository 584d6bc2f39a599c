"""What a person reads in a run directory: report.md, curves.png, and the `rledit summarize`
table of finished runs (files written through atomic.py)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import yaml

from rledit_ray.atomic import save_figure, write_text
from rledit_ray.figures import pyplot


def _pct(x) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.2f}%"


def write_report(path: Path, metrics: dict, config_dict: dict, task, sections: list[str] | None = None,
                 figures: list[tuple[str, str]] = ()) -> None:
    """`task` supplies its table rows, a note and extra sections; `sections` adds more;
    `figures` are (file, caption) pairs beside the report, shown in it."""
    rows = ["| metric | before | random policy | after (RL edit) |", "|---|---|---|---|"]
    rand = metrics.get("random_policy", {})
    for key, label in task.report_rows:
        if key in metrics["after"]:
            rows.append(f"| {label} | {_pct(metrics['before'].get(key))} | {_pct(rand.get(key))} | "
                        f"{_pct(metrics['after'][key])} |")
    keys = ("task", "dataset", "forget_classes", "world", "edit", "rank", "episode_length", "seed")
    settings = {k: config_dict[k] for k in keys if k in config_dict
                and (k != "forget_classes" or config_dict.get("task", "unlearning") == "unlearning")}
    if config_dict.get("task") == "bias":
        settings["bias"] = config_dict.get("bias")
    note = task.report_note
    sections = [*task.report_sections(metrics), *(sections or [])]
    settings["step_size"] = metrics.get("step_size")
    lines = [
        f"# rledit run: {metrics['task']} on {config_dict.get('dataset')} ({metrics['world']} world, seed {metrics['seed']})",
        "",
        *rows,
        "",
        f"- env steps: {metrics['env_steps']}, wall time: {metrics['wall_time_s']:.1f} s, "
        f"best checkpoint at iteration {metrics.get('best_iteration')}",
        *_optimiser_line(metrics),
        "- before = the original network; random policy = uniform random actions for one episode "
        "(mean over episodes); after = the trained policy applied deterministically.",
        f"- {note}",
        "",
        *([*sections, ""] if sections else []),
        *(figure_section(figures) if figures else []),
        "## Settings",
        "",
        "```yaml",
        yaml.safe_dump({**settings, "reward": config_dict.get("reward"), "samples": config_dict.get("samples"),
                        "agent": config_dict.get("agent")}, sort_keys=False).rstrip(),
        "```",
        "",
        "Full configuration: `config.yaml`. Training curves: `curves.png`. TensorBoard: "
        "`tensorboard --logdir tb`. Model card: `README.md`.",
    ]
    write_text(path, "\n".join(lines) + "\n")


def _optimiser_line(metrics: dict) -> list[str]:
    """How far the optimiser moved the policy per iteration (the history's optimiser statistics)."""
    history = metrics.get("history", [])
    parts = []
    for key, label in (("clip_fraction", "PPO clip fraction"), ("es_step_rms", "ES step (RMS, action units)")):
        values = sorted(h[key] for h in history if key in h)
        if values:
            parts.append(f"{label} per iteration: median {values[len(values) // 2]:.3f} "
                         f"({values[0]:.3f}-{values[-1]:.3f})")
    return [f"- {metrics.get('algorithm', 'ppo').upper()}: {'; '.join(parts)}"] if parts else []


def figure_section(shown: list[tuple[str, str]]) -> list[str]:
    """Markdown lines showing each figure with its caption."""
    lines = ["## Figures", ""]
    for name, caption in shown:
        lines += [f"![{caption}]({name})", "", f"*{name}*: {caption}.", ""]
    return lines


CURVES = [("forget_val_acc", "forget (val)"), ("retain_val_acc", "retain (val)")]


def write_curves(path: Path, history: list[dict], curve_keys=CURVES) -> None:
    plt = pyplot()

    steps = [h["env_steps"] for h in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax1.plot(steps, [h["episode_return_mean"] for h in history], marker=".")
    ax1.set(xlabel="env steps", ylabel="mean episode return", title="PPO training return")
    for key, label in curve_keys:
        evaluated = [h for h in history if key in h]
        ax2.plot([h["env_steps"] for h in evaluated], [h[key] for h in evaluated], marker=".", label=label)
    ax2.set(xlabel="env steps", ylabel="fraction", title="deterministic policy, validation", ylim=(-0.02, 1.02))
    ax2.legend()
    save_figure(fig, path)


BIAS_SUMMARY = [("overall_auc", "overall AUC"), ("bias_score", "bias score"),
                ("worst_group_bias_auc", "worst-group BPSN/BNSP AUC"), ("counterfactual_gap", "counterfactual gap")]


def _bias_summary_table(runs: list[tuple[Path, dict]]) -> str:
    """One row per bias run: each headline test metric as before -> after."""
    rows = ["| run | world | seed | " + " | ".join(f"{label} (test)" for _, label in BIAS_SUMMARY)
            + " | env steps | wall s |", "|---|---|---|" + "---|" * len(BIAS_SUMMARY) + "---|---|"]
    for run, m in runs:
        b, a = m["before"], m["after"]
        cells = " | ".join(f"{_pct(b.get(k))} → {_pct(a.get(k))}" for k, _ in BIAS_SUMMARY)
        rows.append(f"| {run.name} | {m['world']} | {m['seed']} | {cells} | {m['env_steps']} | {m['wall_time_s']:.0f} |")
    return "\n".join(rows)


def summary_table(run_dirs: list[Path]) -> str:
    """Markdown table, one row per finished run directory (metrics.json); one table per task."""
    finished = [(Path(r), json.loads((Path(r) / "metrics.json").read_text()))
                for r in run_dirs if (Path(r) / "metrics.json").is_file()]
    bias_runs = [(r, m) for r, m in finished if m.get("task") == "bias"]
    run_dirs = [r for r, m in finished if m.get("task") != "bias"]
    if bias_runs and not run_dirs:
        return _bias_summary_table(bias_runs)
    tables = [_bias_summary_table(bias_runs)] if bias_runs else []
    rows = ["| run | world | seed | forget (test) | retain (test) | forget (train) | retain (train) | "
            "random policy forget / retain | env steps | wall s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for run in run_dirs:
        path = Path(run) / "metrics.json"
        if not path.is_file():
            continue
        m = json.loads(path.read_text())
        a, r = m["after"], m.get("random_policy", {})
        rows.append(
            f"| {Path(run).name} | {m['world']} | {m['seed']} | {_pct(a['forget_acc'])} | {_pct(a['retain_acc'])} | "
            f"{_pct(a.get('forget_train_acc'))} | {_pct(a.get('retain_train_acc'))} | "
            f"{_pct(r.get('forget_acc'))} / {_pct(r.get('retain_acc'))} | {m['env_steps']} | {m['wall_time_s']:.0f} |"
        )
    return "\n\n".join(["\n".join(rows), *tables])
