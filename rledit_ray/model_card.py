"""README.md beside edited_weights.safetensors: a model card in the Hugging Face layout.

An edited network is shared as models are shared: the folder with its weights and this card
can be pushed to a hub repository as it is. The card has the hub's YAML front matter (tags,
library_name, metrics, and a model-index holding the held-out test results, which the hub
renders as an evaluation table) and sections saying what was edited, by which policy, what
the edit did on held-out test data, and the command and configuration that reproduce it.
"""
from __future__ import annotations

import math
from pathlib import Path

import yaml

from rledit_ray.atomic import write_text

CARD = "README.md"
# Hub ids of the built-in datasets that live on the Hugging Face hub.
HUB_DATASETS = {"mnist": "ylecun/mnist"}
MOVED = 0.005  # per-class changes below half a point are noise on a few hundred test images
TASKS = {"unlearning": ("image-classification", "machine unlearning"), "bias": ("text-classification", "bias mitigation")}


def test_rows(task, metrics: dict) -> list[tuple[str, str, float | None, float]]:
    """(key, label, before, after) for every report row measured on held-out test data."""
    before, after = metrics.get("before", {}), metrics.get("after", {})
    return [(k, label, before.get(k), after[k]) for k, label in task.report_rows
            if "(test)" in label and isinstance(after.get(k), (int, float))]


def reproduce_command(cfg) -> str:
    """The command that trains these weights again from the run folder's config.yaml."""
    if cfg.target.python_object:
        return (f"# the target was a Python object ({cfg.target.python_object}): pass the same model to\n"
                f"# rledit_ray.edit(model, ...) with the settings in config.yaml")
    return "rledit train --config config.yaml --out reproduced-run   # from this folder"


def _metric_type(key: str) -> str:
    """The hub's metric id where one fits (accuracy, roc_auc), else the project's name."""
    return "accuracy" if key.endswith("_acc") else "roc_auc" if key.endswith("_auc") else key


def front_matter(cfg, metrics: dict, task, name: str) -> dict:
    hub_task, task_name = TASKS.get(cfg.task, ("other", cfg.task))
    rows = [(k, label, a) for k, label, _, a in test_rows(task, metrics) if math.isfinite(a)]
    meta = {
        "library_name": "pytorch",
        "tags": ["rledit-ray", "model-editing", "reinforcement-learning",
                 "machine-unlearning" if cfg.task == "unlearning" else "bias-mitigation",
                 f"{cfg.world}-world", "pytorch", "safetensors"],
        "metrics": list(dict.fromkeys(_metric_type(k) for k, _, _ in rows)),
    }
    if cfg.dataset in HUB_DATASETS:
        meta["datasets"] = [HUB_DATASETS[cfg.dataset]]
    meta["model-index"] = [{"name": name, "results": [{
        "task": {"type": hub_task, "name": task_name},
        "dataset": {"type": HUB_DATASETS.get(cfg.dataset, cfg.dataset), "name": cfg.dataset, "split": "test"},
        "metrics": [{"type": _metric_type(k), "name": f"{label} after the edit", "value": round(float(a), 6)}
                    for k, label, a in rows]}]}]
    return meta


def _pct(x) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.2f}%"


def _what_was_edited(cfg, metrics: dict, forgotten) -> list[str]:
    target = metrics.get("target") or {}
    described = target.get("architecture") or target.get("class") or target.get("hf") or "the target network"
    request = (f"forget class(es) {list(forgotten)}" if cfg.task == "unlearning"
               else f"bias objective `{cfg.bias.objective}` over the dataset's identity groups")
    if cfg.generalist is not None:
        request += f" (served by a generalist policy trained on requests {cfg.generalist.train_classes})"
    world = ("MaskWorld: each edited weight is scaled, W = W0 * M" if cfg.world == "mask"
             else "ShiftWorld: each edited weight is moved, W = W0 + D")
    return ["## What was edited", "",
            f"- network: {described} trained on `{cfg.dataset}`"
            + (f" (original weights' fingerprint `{target['fingerprint']}`)" if target.get("fingerprint") else ""),
            f"- request: {request}",
            f"- edited parameters: {', '.join(f'`{p}`' for p in cfg.edit)}; everything else is the original",
            f"- edit: {world}, built in {cfg.episode_length} steps of rank-{cfg.rank} updates", ""]


def _policy(cfg, metrics: dict, checkpoint: str) -> list[str]:
    lines = ["## By which policy", "",
             f"- a PPO policy (Ray RLlib, rledit-ray) trained to make this edit; checkpoint: `{checkpoint}`"]
    if "env_steps" in metrics:
        lines.append(f"- {metrics['iterations']} PPO iterations, {metrics['env_steps']} env steps; the checkpoint of "
                     f"iteration {metrics.get('best_iteration')} was chosen on the validation split")
    lines.append("- applied deterministically (the policy's mean action) to the original network")
    return [*lines, ""]


def _metrics_table(task, metrics: dict, forgotten) -> list[str]:
    lines = ["## Metrics before and after (held-out test)", "", "| metric | before | after |", "|---|---|---|"]
    lines += [f"| {label} | {_pct(b)} | {_pct(a)} |" for _, label, b, a in test_rows(task, metrics)]
    per_class = metrics.get("per_class_test_acc")
    if per_class:
        pairs = list(enumerate(zip(per_class["before"], per_class["after"])))
        moved = [(k, b, a) for k, (b, a) in pairs if abs(a - b) >= MOVED or k in forgotten]
        lines += ["", f"Classes whose test accuracy moved by {100 * MOVED:.1f} points or more (the others did not):", "",
                  "| class | before | after | change (points) |", "|---|---|---|---|"]
        lines += [f"| {k}{' (forgotten)' if k in forgotten else ''} | {_pct(b)} | {_pct(a)} | {100 * (a - b):+.1f} |"
                  for k, b, a in moved]
    return [*lines, "", "Test images (or texts) were never used to train the policy or to choose its checkpoint.", ""]


def _architecture(cfg, metrics: dict) -> str:
    """How to build the network the weights load into, as a comment for the snippet."""
    target = metrics.get("target") or {}
    if cfg.target.model:
        return f"{cfg.target.model} with kwargs {cfg.target.kwargs or {}}"
    if cfg.target.hf:
        return f"transformers.AutoModelForSequenceClassification.from_pretrained({cfg.target.hf!r})"
    if target.get("architecture"):
        return f"{target['architecture']} as rledit-ray builds it for {cfg.dataset} (rledit_ray.targets)"
    return "the original architecture, built as for training"


def model_card(cfg, metrics: dict, task, name: str, reproduce: str, checkpoint: str = "checkpoint/",
               figures: list[tuple[str, str]] = (), forgotten=None) -> str:
    """The card's text. `reproduce`: the command that makes these weights again; `forgotten`:
    the classes the weights forget (default: the config's)."""
    forgotten = cfg.forget_classes if forgotten is None else forgotten
    title = f"{name}: {cfg.dataset} {'classifier' if cfg.task == 'unlearning' else 'text classifier'} edited by RL"
    lines = ["---", yaml.safe_dump(front_matter(cfg, metrics, task, name), sort_keys=False).rstrip(), "---", "",
             f"# {title}", "",
             f"`edited_weights.safetensors` is a copy of a trained network with a few layers edited by a reinforcement-"
             f"learning policy ({cfg.task}). Load it into the original architecture.", "",
             *_what_was_edited(cfg, metrics, forgotten), *_policy(cfg, metrics, checkpoint),
             *_metrics_table(task, metrics, forgotten)]
    if figures:
        lines += ["## Figures", "", *[f"- [{caption}]({file})" for file, caption in figures], ""]
    lines += ["## How to reproduce", "", "```bash", reproduce, "```", "", "with this configuration:",
              "", "```yaml", yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False).rstrip(), "```", "",
              "## How to use", "", "```python", "from safetensors.torch import load_file", "",
              f"model = ...  # {_architecture(cfg, metrics)}",
              'model.load_state_dict(load_file("edited_weights.safetensors"))', "```", "",
              "## Limitations", "",
              "- The numbers above are on this dataset's held-out test split only; the edit is not certified "
              "(forgotten classes may still be recoverable, e.g. by fine-tuning).",
              "- Only the parameters listed above differ from the original network."]
    return "\n".join(lines) + "\n"


def write_model_card(folder: str | Path, cfg, metrics: dict, task, reproduce: str, checkpoint: str = "checkpoint/",
                     figures: list[tuple[str, str]] = (), forgotten=None) -> Path:
    path = Path(folder) / CARD
    write_text(path, model_card(cfg, metrics, task, Path(folder).name, reproduce, checkpoint, figures, forgotten))
    return path
