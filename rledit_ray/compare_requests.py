"""`rledit compare-requests`: a generalist policy against hand-designed unlearning, per request.

For each requested forget class (by default the checkpoint's held-out classes) every method
edits the same trained target on the same splits and is scored by the same code
(evaluation.py): the generalist serves the request with T deterministic policy steps and no
training; each baseline (SSD, NegGrad+, ...) runs its own algorithm for that class. Seconds
are the edit alone for every method: after loading, before scoring.

Output folder: rows/<method>-class<k>-seed<s>.json as each finishes (a rerun resumes; a
MaskWorld and a ShiftWorld generalist may share one folder: `--baselines` with no names
adds only the policy's rows), comparison.csv and comparison.md.
"""
from __future__ import annotations

import copy
import csv
import io
import json
from pathlib import Path

import torch

from rledit_ray.atomic import write_json, write_text
from rledit_ray.baselines import BASELINES, BaselineSettings, run_baseline
from rledit_ray.errors import UserError
from rledit_ray.evaluation import evaluate_unlearning
from rledit_ray.figures import tradeoff_figure
from rledit_ray.outputs import REQUEST_COMPARISON, check_output, make_output
from rledit_ray.progress import Progress

GENERALIST = "rl_generalist"  # rows are named rl_generalist_<world>: a mask and a shift policy can share a table
DEFAULT_BASELINES = ["ssd", "neggrad_plus"]
COLUMNS = [("forget_acc", "forget (test)"), ("retain_acc", "retain (test)"),
           ("ua", "UA (1 - forget train)"), ("mia_efficacy", "MIA efficacy"), ("time_s", "seconds per edit")]


def run_compare_requests(checkpoint: str, out: str | Path, classes: list[int] | None = None,
                         baselines: list[str] | None = None, seed: int = 0, progress=print) -> Path:
    from rledit_ray.data import unlearning_splits
    from rledit_ray.editing import load_policy
    from rledit_ray.generalist import serve

    baselines = list(dict.fromkeys(DEFAULT_BASELINES if baselines is None else baselines))
    for name in baselines:
        if name not in BASELINES:
            raise UserError(f"unknown baseline '{name}': choose from {', '.join(BASELINES)}")
    if not 0 <= seed <= 2**32 - 1:  # numpy and torch take unsigned 32-bit seeds
        raise UserError(f"--seed must be in 0..{2**32 - 1} (got {seed})")
    out = check_output(out, "--out", accept=(REQUEST_COMPARISON,))
    cfg, _, world, policy = load_policy(checkpoint, forget_class=classes[0] if classes else None, serving=False)
    if cfg.generalist is None:
        raise UserError(f"'{checkpoint}' is not a generalist checkpoint (no generalist: section in its config)")
    classes = [world.requests.check(k) for k in (classes or cfg.generalist.heldout_classes)]
    torch.set_num_threads(1)  # tiny ops on shared cores: threads cost more than they give
    target = copy.deepcopy(world.model)  # still unedited: the baselines' starting point
    make_output(out / "rows", "--out")
    ds = world.requests.ds
    generalist = f"{GENERALIST}_{cfg.world}"
    progress(f"compare-requests: {cfg.dataset}, classes {classes}, {generalist} (trained on "
             f"{cfg.generalist.train_classes}) vs {', '.join(baselines) or 'no baseline'} -> {out}")
    bar = Progress("compare-requests rows", total=len(classes) * (1 + len(baselines)), unit="row", lines=False)
    progress = bar.printer(progress)  # each row prints its own line
    for k in classes:
        splits = unlearning_splits(ds, [k])
        for method in [generalist, *baselines]:
            path = out / "rows" / f"{method}-class{k}-seed{seed}.json"
            if path.is_file():
                bar.update()
                continue
            if method == generalist:
                _, seconds = serve(world, policy, k)
                model = world.model
            else:
                model, seconds = run_baseline(method, target, splits, BaselineSettings(seed=seed, dataset=cfg.dataset))
            row = {"method": method, "forget_class": k, "seed": seed, "time_s": seconds,
                   "seen_in_training": k in cfg.generalist.train_classes,
                   **evaluate_unlearning(model, splits, seed=seed)}
            write_json(path, row)
            progress(f"class {k} {method:14s} {seconds:8.3f} s | forget test {row['forget_acc']:.2%} | "
                     f"retain test {row['retain_acc']:.2%} | UA {row['ua']:.2%} | MIA {row['mia_efficacy']:.2%}")
            bar.update()
    bar.close()
    write_outputs(out)
    return out


def write_outputs(out: Path) -> None:
    rows = [json.loads(p.read_text()) for p in sorted((out / "rows").glob("*.json"))]
    if not rows:
        return
    keys = ["method", "forget_class", "seed", *[c for c, _ in COLUMNS]]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(sorted(rows, key=_order))
    write_text(out / "comparison.csv", buf.getvalue())
    scatter = tradeoff_figure(out, rows, point_label="forget_class")  # one point per (method, class)
    write_text(out / "comparison.md", markdown_table(rows) + f"\n\n![every request, every method]({scatter.name})\n")


def _order(row: dict):
    methods = [f"{GENERALIST}_mask", f"{GENERALIST}_shift", *BASELINES]
    return (row["forget_class"], methods.index(row["method"]) if row["method"] in methods else 99, row["seed"])


def markdown_table(rows: list[dict]) -> str:
    lines = ["| forget class | method | " + " | ".join(label for _, label in COLUMNS) + " |",
             "|---|---|" + "---|" * len(COLUMNS)]
    for r in sorted(rows, key=_order):
        cells = [f"{r[c]:.3f}" if c == "time_s" else f"{100 * r[c]:.2f}%" for c, _ in COLUMNS]
        lines.append(f"| {r['forget_class']} | {r['method']} | " + " | ".join(cells) + " |")
    lines += ["", "Accuracies on held-out test images of the forgotten class (forget) and of the others "
              "(retain); UA = 1 - accuracy on the fit pool's forget set; MIA efficacy as in `rledit compare`. "
              f"Seconds: the edit alone (after loading): {GENERALIST}_<world> = T deterministic policy steps, including "
              "gathering the request's reward samples; baselines = their algorithm on the fit pool."]
    return "\n".join(lines)
