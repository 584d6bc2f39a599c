"""The bias task's target: a small MLP head on frozen sentence embeddings.

The head is an `nn.Sequential` (fc1 -> relu -> fc2, two logits: benign / harmful) so a
world can cache the frozen prefix before the first edited layer; its layers are what the
agent edits. It is trained once per dataset on the `fit` split with a fixed seed and cached
like the CNNs (safetensors + json metadata, retrained when the recipe or data change).
"""
from __future__ import annotations

import logging
import time
from collections import OrderedDict
from dataclasses import asdict

import torch
from torch import nn

from rledit_ray.cache import cached_model, fingerprint
from rledit_ray.targets.train import Recipe, train_classifier

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
    """The project's trained head for a dataset, from the cache or trained now; keyed by the
    fit rows' content, the recipe and the head's size."""
    recipe = Recipe(**{**asdict(HEAD_RECIPE), "seed": seed})
    data_hash = fingerprint(x_fit, y_fit)
    key = fingerprint(asdict(recipe), HEAD_RECIPE_VERSION, HIDDEN, data_hash)

    def build() -> tuple[nn.Module, dict]:
        torch.manual_seed(seed)
        model = text_head(x_fit.shape[1])
        started = time.perf_counter()
        log.info("training the %s classifier head (seed %d, %d epochs); cached afterwards", name, seed, recipe.epochs)
        train_classifier(model, x_fit, y_fit, recipe)
        pred = model(x_fit).argmax(1) if len(y_fit) else y_fit
        return model, {"dataset": name, "recipe": asdict(recipe), "recipe_version": HEAD_RECIPE_VERSION,
                       "data_hash": data_hash, "hidden": HIDDEN, **(extra_meta or {}),
                       "architecture": f"minilm-mean + mlp({HIDDEN})", "fit_rows": len(y_fit),
                       "fit_accuracy": float((pred == y_fit).float().mean()),
                       "train_seconds": round(time.perf_counter() - started, 1)}

    return cached_model(f"{name}-minilm-head-seed{seed}", key, lambda: text_head(x_fit.shape[1]), build)
