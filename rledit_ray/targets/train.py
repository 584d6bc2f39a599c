"""Train the project's target networks once, with a fixed seed, and cache them.

The cache holds `<name>.safetensors` plus `<name>.json` metadata naming the data source,
seed, recipe and measured test accuracy. The file name carries a fingerprint of the training
data, the architecture and the recipe; a cached file whose metadata does not carry the same
key is retrained, never trusted.
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass

import torch
from torch import nn

from rledit_ray.cache import cached_model, fingerprint
from rledit_ray.data import ImageDataset, pools
from rledit_ray.errors import UserError
from rledit_ray.progress import Progress
from rledit_ray.targets.architectures import builtin_cnn
from rledit_ray.targets.split import call_model

log = logging.getLogger(__name__)
RECIPE_VERSION = 2


@dataclass(frozen=True)
class Recipe:
    epochs: int
    batch_size: int = 128
    lr: float = 2e-3
    seed: int = 0


RECIPES = {"mnist": Recipe(epochs=5), "digits": Recipe(epochs=30, batch_size=64)}
DEFAULT_RECIPE = Recipe(epochs=5)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 4096) -> float:
    if len(y) == 0:
        return float("nan")
    with torch.no_grad():
        hits = sum(
            (model(x[i : i + batch]).argmax(1) == y[i : i + batch]).sum().item()
            for i in range(0, len(y), batch)
        )
    return hits / len(y)


def full_model_predict(model: nn.Module, batch: int = 4096):
    """A `predict(name, labeled_set) -> labels` function running the whole network."""
    device = next(model.parameters()).device

    def predict(name, labeled):
        with torch.inference_mode():
            return torch.cat([call_model(model, labeled.x[i : i + batch].to(device)).argmax(1).cpu()
                              for i in range(0, len(labeled), batch)]) if len(labeled) else torch.empty(0, dtype=torch.long)
    return predict


def full_model_scores(model: nn.Module, batch: int = 4096):
    """A `scores(name, labeled_set) -> p(label 1)` function running the whole network."""
    device = next(model.parameters()).device

    def scores(name, labeled):
        if not len(labeled):
            return torch.empty(0)
        with torch.inference_mode():
            return torch.cat([call_model(model, labeled.x[i : i + batch].to(device)).softmax(1)[:, 1].cpu()
                              for i in range(0, len(labeled), batch)])
    return scores


def train_classifier(model: nn.Module, x: torch.Tensor, y: torch.Tensor, recipe: Recipe) -> nn.Module:
    """Adam with a cosine schedule; deterministic for a given seed on CPU."""
    gen = torch.Generator().manual_seed(recipe.seed)
    opt = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    steps = recipe.epochs * ((len(y) + recipe.batch_size - 1) // recipe.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    model.train()
    bar = Progress("target training", total=recipe.epochs, unit="epoch")
    for _ in range(recipe.epochs):
        order = torch.randperm(len(y), generator=gen)
        for i in range(0, len(y), recipe.batch_size):
            idx = order[i : i + recipe.batch_size]
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        bar.update(loss=f"{loss.item():.4f}")
    bar.close()
    model.eval()
    return model


def load_target(ds: ImageDataset, seed: int = 0) -> tuple[nn.Module, dict]:
    """The project's trained CNN for `ds`, from the cache or trained now (fit pool only).

    The cache is keyed by the fit pool's content (images and labels), the architecture and the
    recipe: other data under the same dataset name gets its own network, never a stale one."""
    recipe = Recipe(**{**asdict(RECIPES.get(ds.name, DEFAULT_RECIPE)), "seed": seed})
    p = pools(ds)
    try:
        architecture, _ = builtin_cnn(ds.name, ds.num_classes, ds.image_shape)
    except ValueError as err:
        raise UserError(f"dataset '{ds.name}': {err}") from None
    data_hash = fingerprint(p.fit.x, p.fit.y)
    key = fingerprint(architecture, asdict(recipe), RECIPE_VERSION, data_hash, tuple(ds.image_shape), ds.num_classes)

    def make() -> nn.Module:
        return builtin_cnn(ds.name, ds.num_classes, ds.image_shape)[1]

    def build() -> tuple[nn.Module, dict]:
        torch.manual_seed(seed)
        model = make()
        started = time.perf_counter()
        log.info("training the %s target CNN (seed %d, %d epochs); cached afterwards", ds.name, seed, recipe.epochs)
        train_classifier(model, p.fit.x, p.fit.y, recipe)
        log.info("target trained in %.0f s", time.perf_counter() - started)
        return model, {
            "dataset": ds.name, "recipe": asdict(recipe), "recipe_version": RECIPE_VERSION,
            "data_hash": data_hash, "data_source": ds.source, "architecture": architecture,
            "train_images": len(p.fit),
            "test_accuracy": accuracy(model, p.test.x, p.test.y),
            "validation_accuracy": accuracy(model, p.validation.x, p.validation.y),
            "train_seconds": round(time.perf_counter() - started, 1),
        }

    return cached_model(f"{ds.name}-cnn-seed{seed}", key, make, build)
