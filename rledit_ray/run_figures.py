"""The figures of a finished run directory, beside curves.png, and the numbers drawn in them.

- class_accuracy.png (unlearning): every class's accuracy on held-out test images, before
  and after the edit, from the world's evaluation of the original and the edited weights
  (its cached prefix activations and the suffix: the same logits as a full forward pass,
  which the split is checked against when the world is built);
- group_auc.png (bias): the per-group AUCs of the run's own test metrics;
- edit.png: what the policy did to each edited layer's matrix, in the world's own terms
  (MaskWorld: the mask M in W = W0 * M; ShiftWorld: (W - W0) in units of W0's spread).

`write_run_figures` returns (file, caption) pairs for report.md and the model card, and the
per-class accuracies for metrics.json.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from rledit_ray import figures

CLASS_ACCURACY, GROUP_AUC, EDIT = "class_accuracy.png", "group_auc.png", "edit.png"


def forgotten_classes(world, cfg) -> list[int]:
    """The classes the saved weights forget: the config's, or the request a generalist
    world served last (the one its weights hold)."""
    if getattr(world, "requests", None) is not None:
        return [int(world.request)] if world.request is not None else []
    return [int(k) for k in cfg.forget_classes] if cfg.task == "unlearning" else []


def per_class_accuracy(pred: torch.Tensor, y: torch.Tensor, classes: int) -> list[float]:
    """Accuracy of the labels `pred` on the rows of each class 0..classes-1 (NaN for a class with no rows)."""
    return [float((pred[y == k] == k).float().mean()) if (y == k).any() else float("nan") for k in range(classes)]


def test_predictions(world) -> tuple[torch.Tensor, torch.Tensor]:
    """(predicted labels, labels) of every held-out test image of an unlearning world's task
    (the forgotten classes' and the others'), for the weights the world holds now."""
    sets = world.task.evaluation_sets(("test",))
    return (torch.cat([world.predict(name, s).cpu() for name, s in sets.items()]),
            torch.cat([s.y for s in sets.values()]))


@contextmanager
def original_weights(world):
    """The world's edited layers hold their original weights inside the block, the edit after it."""
    edited = [layer.read().clone() for layer in world.layers]
    for layer, w0 in zip(world.layers, world.original):
        layer.write(w0)
    try:
        yield
    finally:
        for layer, w in zip(world.layers, edited):
            layer.write(w)


def edit_panels(world, forgotten: list[int]) -> list[figures.EditPanel]:
    """One panel per edited layer, from the world's state after the final episode."""
    output_layer = [name for name, m in world.model.named_modules() if isinstance(m, nn.Linear)][-1]
    panels = []
    for i, layer in enumerate(world.layers):
        if getattr(world, "kind", "") == "mask":
            matrix, centre, label = world.masks[i], 1.0, "mask M (W = W0 * M)"
        else:
            matrix = (layer.read() - world.original[i]) / world.scales[i]
            centre, label = 0.0, "shift (W - W0) / std(W0)"
        rows_are_classes = layer.module_name == output_layer
        panels.append(figures.EditPanel(
            layer.module_name, matrix.detach().float().cpu().numpy(), centre, label,
            marked=[k for k in forgotten if k < layer.rows] if rows_are_classes else [],
            row_names=[_class_name(world.task, k) for k in range(layer.rows)] if rows_are_classes else None))
    return panels


def _class_name(task, k: int) -> str:
    if getattr(task, "name", "") == "bias":  # the bias task's two logits
        return ("benign (0)", "harmful (1)")[k] if k < 2 else f"class {k}"
    return f"class {k}"


def write_run_figures(run_dir: Path, world, cfg, metrics: dict) -> tuple[list[tuple[str, str]], dict]:
    """Draw the run's figures; returns ([(file, caption)], extra metrics.json entries)."""
    shown, extra = [("curves.png", "PPO return and the deterministic policy's validation metrics per iteration")], {}
    forgotten = forgotten_classes(world, cfg)
    if cfg.task == "unlearning":
        after_pred, y = test_predictions(world)
        with original_weights(world):
            before_pred, _ = test_predictions(world)
        classes = int(max(int(y.max()) + 1, *(k + 1 for k in forgotten)))
        before = per_class_accuracy(before_pred, y, classes)
        after = per_class_accuracy(after_pred, y, classes)
        extra["per_class_test_acc"] = {"before": before, "after": after}
        figures.class_accuracy_bars(run_dir / CLASS_ACCURACY, before, after, forgotten,
                                    title=f"per-class accuracy on held-out test, forget {forgotten}: before vs after")
        shown.append((CLASS_ACCURACY, f"per-class test accuracy before and after (forgotten: {forgotten}); "
                                      "numbers: change in points"))
    elif "groups" in metrics.get("after", {}):
        figures.group_auc_bars(run_dir / GROUP_AUC, metrics["before"]["groups"], metrics["after"]["groups"],
                               title="per-group AUC on held-out test: before vs after")
        shown.append((GROUP_AUC, "per-group Subgroup / BPSN / BNSP AUC on test, before and after"))
    world_kind = "MaskWorld: the mask" if getattr(world, "kind", "") == "mask" else "ShiftWorld: the shift"
    figures.edit_heatmaps(run_dir / EDIT, edit_panels(world, forgotten),
                          title=f"the edit per layer ({world_kind}; white = unchanged"
                                + (f"; framed row = forgotten class {forgotten})" if forgotten else ")"))
    shown.append((EDIT, f"the edit of each edited layer ({world_kind} per entry, rows x columns)"))
    return shown, extra
