"""The pictures of a run or a comparison, drawn from plain numbers (no project objects).

- `class_accuracy_bars`: per-class test accuracy before and after an unlearning edit (the
  forgotten class falls; the others show what the edit cost them);
- `edit_heatmaps`: the edit itself, one panel per edited layer (rows x columns of its matrix),
  with the forgotten class's row framed where the layer's rows are the classes;
- `group_auc_bars`: a bias edit's Subgroup/BPSN/BNSP AUC per identity group, before and after;
- `tradeoff_scatter`: every method of a comparison on the task's two competing axes.

Every figure is written through atomic.save_figure.
"""
from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rledit_ray.atomic import save_figure

BEFORE, AFTER, MARK = "#9e9e9e", "#1f77b4", "#d62728"
FRAME = "#ffbf00"  # the forgotten row's frame: amber shows on both ends of the diverging map
# Row labels are drawn only where they stay legible.
MAX_LABELLED_ROWS = 32


def pyplot():
    """matplotlib.pyplot drawing to files only (the Agg backend), never a window."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def class_accuracy_bars(path: Path, before: Sequence[float], after: Sequence[float], forgotten: Sequence[int],
                        names: Sequence[str] | None = None, title: str = "per-class accuracy (test)") -> Path:
    """Grouped bars per class; the forgotten classes' "after" bar in red; the change in
    points above each class that moved by half a point or more."""
    plt = pyplot()
    before, after = np.asarray(before, float), np.asarray(after, float)
    k = np.arange(len(before))
    names = list(names) if names else [str(i) for i in k]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.55 * len(k) + 2), 3.8))
    ax.bar(k - 0.2, before, 0.4, color=BEFORE, label="before")
    colors = [MARK if i in forgotten else AFTER for i in k]
    ax.bar(k + 0.2, after, 0.4, color=colors, label="after (RL edit)")
    for i in k:
        delta = 100 * (after[i] - before[i])
        if abs(delta) >= 0.5:
            ax.annotate(f"{delta:+.1f}", (i, max(before[i], after[i])), textcoords="offset points", xytext=(0, 3),
                        ha="center", fontsize=7, color=MARK if i in forgotten else "black")
    ax.set_xticks(k, [f"{n}\n(forgotten)" if i in forgotten else n for i, n in zip(k, names)], fontsize=8)
    ax.set(ylabel="accuracy", ylim=(0, 1.12), title=title)
    ax.legend(loc="lower right", fontsize=8)
    save_figure(fig, path)
    return Path(path)


@dataclass
class EditPanel:
    """One edited layer's edit as a matrix. `centre`: the value meaning "unchanged" (1 for
    a mask, 0 for a shift); `marked`: rows to frame (the forgotten classes) when the rows
    are classes, named by `row_names`."""

    name: str
    matrix: np.ndarray
    centre: float
    label: str
    marked: list[int] = field(default_factory=list)
    row_names: list[str] | None = None


def edit_heatmaps(path: Path, panels: Sequence[EditPanel], title: str) -> Path:
    """One heatmap per layer on a diverging scale centred on "unchanged" and symmetric, so
    white is untouched and the colour's depth is the size of the change."""
    plt = pyplot()
    from matplotlib.colors import Normalize
    from matplotlib.patches import Rectangle

    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.2), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        m = np.asarray(panel.matrix, float)
        span = float(np.nanmax(np.abs(m - panel.centre))) if m.size else 0.0
        span = span or 1e-6  # an untouched layer: all white, still a valid scale
        image = ax.imshow(m, cmap="RdBu_r", norm=Normalize(panel.centre - span, panel.centre + span),
                          aspect="auto", interpolation="nearest")
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.03, label=panel.label)
        changed = float(np.mean(np.abs(m - panel.centre) > 0.01 * max(abs(panel.centre), 1.0))) if m.size else 0.0
        ax.set(title=f"{panel.name} ({m.shape[0]} x {m.shape[1]}): {100 * changed:.0f}% of entries moved > 1%",
               xlabel="column (input; the last one is the bias where edited)", ylabel="row (output)")
        ax.title.set_fontsize(8)
        if panel.row_names is not None and m.shape[0] <= MAX_LABELLED_ROWS:
            ax.set_yticks(range(m.shape[0]), panel.row_names, fontsize=7)
            for row in panel.marked:
                ax.get_yticklabels()[row].set_color(MARK)
                ax.get_yticklabels()[row].set_fontweight("bold")
        for row in panel.marked:
            ax.add_patch(Rectangle((-0.5, row - 0.5), m.shape[1], 1, fill=False, edgecolor=FRAME, linewidth=2.4))
    fig.suptitle(textwrap.fill(title, 60 * len(panels)), fontsize=9)
    save_figure(fig, path)
    return Path(path)


GROUP_AUCS = (("subgroup_auc", "Subgroup AUC"), ("bpsn_auc", "BPSN AUC"), ("bnsp_auc", "BNSP AUC"))


def group_auc_bars(path: Path, before: dict[str, dict], after: dict[str, dict],
                   title: str = "per-group AUC (test)") -> Path:
    """Three panels (Subgroup, BPSN, BNSP AUC), a pair of bars per identity group. `before`
    and `after` map group -> its metrics (tasks/bias_metrics.py group_metrics)."""
    plt = pyplot()
    groups = list(after)
    x = np.arange(len(groups))
    # One row per metric: the groups (up to Jigsaw's nine, with long names) share one x axis.
    fig, axes = plt.subplots(3, 1, figsize=(max(6.5, 0.75 * len(groups) + 2), 8.0), sharex=True, sharey=True)
    values = [g[k] for side in (before, after) for g in side.values() for k, _ in GROUP_AUCS]
    low = min([v for v in values if np.isfinite(v)] or [0.5])
    for ax, (key, label) in zip(axes, GROUP_AUCS):
        b = [before[g][key] for g in groups]
        a = [after[g][key] for g in groups]
        ax.bar(x - 0.2, b, 0.4, color=BEFORE, label="before")
        ax.bar(x + 0.2, a, 0.4, color=AFTER, label="after (RL edit)")
        for i in x:
            if np.isfinite(a[i]) and np.isfinite(b[i]) and abs(a[i] - b[i]) >= 0.001:  # a tenth of a point
                ax.annotate(f"{100 * (a[i] - b[i]):+.1f}", (i, max(a[i], b[i])), textcoords="offset points",
                            xytext=(0, 3), ha="center", fontsize=7)
        ax.set(title=label, ylabel="AUC", ylim=(max(0.0, low - 0.05), 1.05))
        ax.title.set_fontsize(9)
    axes[-1].set_xticks(x, groups, rotation=30, ha="right", fontsize=8)
    axes[0].legend(fontsize=7, loc="upper right", ncol=2)
    fig.suptitle(title + "; numbers: change in points (where 0.1 or more)", fontsize=9)
    save_figure(fig, path)
    return Path(path)


@dataclass(frozen=True)
class Axes2D:
    """The two competing metrics of a task's trade-off, and which way is better on each."""

    x: str
    y: str
    x_label: str
    y_label: str
    better: str  # where the ideal corner is, e.g. "upper left"


TRADEOFFS = {
    "unlearning": Axes2D("forget_acc", "retain_acc", "forget accuracy (test; lower = forgotten)",
                         "retain accuracy (test)", "upper left"),
    "bias": Axes2D("worst_group_bias_auc", "overall_auc", "worst-group BPSN/BNSP AUC (test)",
                   "overall AUC (test)", "upper right"),
}
TRADEOFF_FILES = {"unlearning": "forget_retain.png", "bias": "fairness_utility.png"}


def tradeoff_figure(folder: Path, rows: Sequence[dict], point_label: str | None = None) -> Path:
    """A comparison's trade-off scatter (the task named by its rows), in `folder`."""
    task = rows[0].get("task", "unlearning")
    axes = TRADEOFFS[task]
    title = f"{axes.y.replace('_', ' ')} vs {axes.x.replace('_', ' ')} per method (faint: each row, bold: mean)"
    return tradeoff_scatter(Path(folder) / TRADEOFF_FILES[task], rows, axes, title, point_label)


def tradeoff_scatter(path: Path, rows: Sequence[dict], axes: Axes2D, title: str, point_label: str | None = None) -> Path:
    """Every row as a faint point of its method's colour (labelled by `point_label`, e.g.
    the forget class, when given); each method's mean as a bold point with its name."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    colors = plt.get_cmap("tab10")
    for i, method in enumerate(methods):
        mine = [r for r in rows if r["method"] == method and axes.x in r and axes.y in r]
        if not mine:
            continue
        xs, ys = np.array([r[axes.x] for r in mine], float), np.array([r[axes.y] for r in mine], float)
        ax.scatter(xs, ys, s=18, alpha=0.35, color=colors(i % 10))
        if point_label:
            for r, x, y in zip(mine, xs, ys):
                ax.annotate(str(r.get(point_label, "")), (x, y), fontsize=6, alpha=0.7)
        ax.scatter([np.nanmean(xs)], [np.nanmean(ys)], s=70, color=colors(i % 10), edgecolor="black",
                   label=f"{method} (n={len(mine)})")
        ax.annotate(method, (np.nanmean(xs), np.nanmean(ys)), textcoords="offset points", xytext=(5, 4), fontsize=7)
    ax.set(xlabel=axes.x_label, ylabel=axes.y_label, title=title)
    ax.margins(0.12)  # room for the method names beside the outermost points
    ax.text(0.02 if "left" in axes.better else 0.98, 0.98, "better", transform=ax.transAxes, fontsize=8,
            ha="left" if "left" in axes.better else "right", va="top", color="green")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    save_figure(fig, path)
    return Path(path)
