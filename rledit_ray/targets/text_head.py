"""The bias task's target: a small MLP head on frozen sentence embeddings.

The head is an `nn.Sequential` (fc1 -> relu -> fc2, two logits: benign / harmful) so a
world can cache the frozen prefix before the first edited layer; its layers are what the
agent edits. It is trained once per dataset on the `fit` split with a fixed seed and cached
like the CNNs (safetensors + json metadata, retrained when the recipe or data change).
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import OrderedDict
from dataclasses import asdict

import torch
from safetensors.torch import load_file
from torch import nn

from rledit_ray.paths import cache_dir
from rledit_ray.targets.train import Recipe, save_weights, train_classifier

log = logging.getLogger(__name__)
HEAD_RECIPE_VERSION = 1
HEAD_RECIPE = Recipe(epochs=20, batch_size=64, lr=1e-3)
HIDDEN = 64


def text_head(in_dim: int = 384, hidden: int = HIDDEN) -> nn.Sequential:
    return nn.Sequential(OrderedDict(fc1=nn.Linear(in_dim, hidden), relu1=nn.ReLU(), fc2=nn.Linear(hidden, 2)))


def positive_scores(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model(x).softmax(1)[:, 1]


def load_text_head(name: str, x_fit: torch.Tensor, y_fit: torch.Tensor, seed: int = 0,
                   extra_meta: dict | None = None) -> tuple[nn.Module, dict]:
    """The project's trained head for a dataset, from the cache or trained now."""
    recipe = Recipe(**{**asdict(HEAD_RECIPE), "seed": seed})
    data_hash = hashlib.sha256(x_fit.numpy().tobytes() + y_fit.numpy().tobytes()).hexdigest()[:16]
    stem = cache_dir() / "targets" / f"{name}-minilm-head-seed{seed}-v{HEAD_RECIPE_VERSION}-{data_hash}"
    expected = {"dataset": name, "recipe": asdict(recipe), "recipe_version": HEAD_RECIPE_VERSION,
                "data_hash": data_hash, "hidden": HIDDEN}
    weights, meta_path = stem.with_suffix(".safetensors"), stem.with_suffix(".json")
    if meta_path.exists() and weights.exists():
        meta = json.loads(meta_path.read_text())
        if all(meta.get(k) == v for k, v in expected.items()):
            model = text_head(x_fit.shape[1])
            model.load_state_dict(load_file(str(weights)))
            return model.eval(), meta
    torch.manual_seed(seed)
    model = text_head(x_fit.shape[1])
    started = time.perf_counter()
    log.info("training the %s classifier head (seed %d, %d epochs); cached afterwards", name, seed, recipe.epochs)
    train_classifier(model, x_fit, y_fit, recipe)
    pred = model(x_fit).argmax(1) if len(y_fit) else y_fit
    meta = {**expected, **(extra_meta or {}), "architecture": f"minilm-mean + mlp({HIDDEN})",
            "fit_rows": len(y_fit), "fit_accuracy": float((pred == y_fit).float().mean()),
            "train_seconds": round(time.perf_counter() - started, 1)}
    save_weights(model, weights, meta)
    return model.eval(), meta

