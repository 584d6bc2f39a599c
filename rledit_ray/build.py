"""Config -> data -> target -> task -> world: the one place a run is assembled.

The process that starts a run (the driver) builds its `Parts` once: the data, the target
network (the project's CNN or text head, trained or loaded from the content-keyed cache; a
user's PyTorch class with its weights; a transformers folder; or a model object handed to the
Python API) and the task. Every EnvRunner then gets exactly those Parts through Ray's object
store (`ship_parts`: the target and the reward samples, without the evaluation pools), so no
worker reads data, trains a target or embeds texts on its own, and each checks that the
target's weights hash to the driver's fingerprint before it builds a world.

Adding a task: one builder in TASK_BUILDERS. Adding a model or data source: targets/sources.py
or data/sources.py, called from the builders here.
"""
from __future__ import annotations

import copy
import json
import logging
import os
import sys
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from rledit_ray.cache import state_fingerprint
from rledit_ray.config import RunConfig, build_config
from rledit_ray.data import load_images, preprocess_images, unlearning_splits
from rledit_ray.data.images import default_normalisation
from rledit_ray.data.text import load_text_dataset, text_splits
from rledit_ray.errors import UserError
from rledit_ray.targets import load_target
from rledit_ray.targets.encoder import MAX_TOKENS, dataset_embeddings, encoder_path
from rledit_ray.targets.sentence_classifier import edits_encoder, sentence_classifier
from rledit_ray.targets.sources import is_file_module, load_sequence_classifier, load_user_model, pack_texts
from rledit_ray.targets.split import PACKED_INPUTS, call_model
from rledit_ray.targets.text_head import load_text_head
from rledit_ray.tasks import BiasTask, UnlearningTask
from rledit_ray.tasks.bias import bias_data
from rledit_ray.tasks.requests import UnlearningRequests
from rledit_ray.worlds.base import EditWorld
from rledit_ray.worlds.batched import WorldBatch
from rledit_ray.worlds.mask import MaskWorld
from rledit_ray.worlds.shift import ShiftWorld

log = logging.getLogger(__name__)
WORLD_CLASSES = {"mask": MaskWorld, "shift": ShiftWorld}
# env_config keys that are not RunConfig fields: the agent's layouts and the shipped parts.
PARTS_KEY = "parts_ref"
AGENT_ONLY_KEYS = ("factor_layout", "obs_layout", PARTS_KEY)
# The config fields a run's Inputs (data and target) depend on, and its Parts (those and the task).
INPUT_FIELDS = {"task", "dataset", "data_root", "data_source", "data_columns", "target", "target_seed"}
PARTS_FIELDS = INPUT_FIELDS | {"forget_classes", "edit", "samples", "seed", "device", "reward", "bias", "generalist"}


@dataclass
class Inputs:
    """What a run edits and on what data: the target (its metadata's "fingerprint" hashes its
    weights) and the data prepared for it (an ImageDataset, or the bias task's BiasData). The
    expensive part of a run (reading data, training or loading the target, embedding texts),
    built once by the driver and shared with Tune trials."""

    model: nn.Module
    meta: dict
    data: object


@dataclass
class Parts:
    """What every world of a run shares: the target, its metadata and the task (or, for a
    generalist, the requests). Sub-envs of one process also share `prefix_cache`."""

    model: nn.Module
    meta: dict  # where the target came from; "fingerprint" hashes its weights
    task: object | None = None
    requests: UnlearningRequests | None = None
    # ES's further reward sample sets (samples.folds - 1 tasks; the task itself is set 0).
    reward_folds: list = field(default_factory=list)
    prefix_cache: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------- the target
def _image_target(cfg: RunConfig, ds) -> tuple[nn.Module, dict]:
    t = cfg.target
    if t.model is None:
        return load_target(ds, seed=cfg.target_seed)
    model = load_user_model(t.model, t.kwargs, t.weights)
    return model, {"source": "pytorch", "model": t.model, "kwargs": t.kwargs, "weights": t.weights,
                   "class": type(model).__name__, "dataset": ds.name, "data_source": ds.source}


def check_fits(model: nn.Module, x: torch.Tensor, num_classes: int, what: str) -> None:
    """Refuse a model that cannot take the data's inputs or has too few outputs for its labels,
    before anything trains on it."""
    try:
        with torch.inference_mode():
            out = call_model(model, x[:2])
    except Exception as err:  # the user's model on the user's data: any failure is a mismatch
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise UserError(f"{what} cannot take the data's inputs (shape {tuple(x.shape[1:])}): "
                        f"{type(err).__name__}: {first}; check target.image_size, mean/std and the channels") from None
    if out.ndim != 2:
        raise UserError(f"{what} returns outputs of shape {tuple(out.shape)} on a batch: a classifier returns "
                        f"(batch, classes) logits")
    if out.shape[1] < num_classes:
        raise UserError(f"the data has {num_classes} classes (labels 0..{num_classes - 1}) but {what} gives "
                        f"{out.shape[1]} outputs: use data whose labels fit the model, or a model with "
                        f"{num_classes} outputs")


def _with_fingerprint(model: nn.Module, meta: dict) -> tuple[nn.Module, dict]:
    return model.eval().requires_grad_(False), {**meta, "fingerprint": state_fingerprint(model)}


# ----------------------------------------------------------------------------- the tasks
def fold_seeds(cfg: RunConfig) -> list[int]:
    """Sampling seeds of the reward sets after the first (whose seed is the run's): apart from
    every other run's first set, so that seed 1 does not score on seed 0's second set."""
    return [cfg.seed + 1_000_003 * k for k in range(1, cfg.samples.folds)]


def _task_args(cfg: RunConfig) -> dict:
    return {"samples_per_set": cfg.samples.per_set, "seed": cfg.seed,
            "target_margin": cfg.reward.target_margin, "kl_coef": cfg.reward.kl_coef}


def normalisation(cfg: RunConfig) -> tuple[list[float], list[float]]:
    """(mean, std) the run's target expects: the config's, else the dataset's usual ones."""
    if cfg.target.mean is not None:
        return cfg.target.mean, cfg.target.std
    return default_normalisation(cfg.dataset)


def image_data(cfg: RunConfig):
    """The run's images, preprocessed as its target expects."""
    size = tuple(cfg.target.image_size) if cfg.target.image_size else None
    raw = load_images(cfg.dataset, root=cfg.data_root, source=cfg.data_source, columns=cfg.data_columns or None,
                      size=size)
    return preprocess_images(raw, *normalisation(cfg))


def _unlearning_inputs(cfg: RunConfig, model: nn.Module | None = None, ds=None) -> Inputs:
    ds = ds if ds is not None else image_data(cfg)
    if model is None:
        model, meta = _image_target(cfg, ds)
    else:
        meta = {"source": "python object", "class": type(model).__name__, "dataset": ds.name}
    check_fits(model, ds.x_test, ds.num_classes, f"the target ({type(model).__name__})")
    return Inputs(*_with_fingerprint(model, meta), data=ds)


def _unlearning_parts(cfg: RunConfig, inputs: Inputs) -> Parts:
    ds = inputs.data
    if cfg.generalist is not None:
        requests = UnlearningRequests(ds, cfg.generalist.train_classes, **_task_args(cfg))
        for k in cfg.generalist.heldout_classes:
            requests.check(k)
        return Parts(inputs.model, inputs.meta, requests=requests)
    splits = unlearning_splits(ds, cfg.forget_classes)
    task = UnlearningTask(splits, **_task_args(cfg))
    folds = [UnlearningTask(splits, **{**_task_args(cfg), "seed": seed}) for seed in fold_seeds(cfg)]
    return Parts(inputs.model, inputs.meta, task=task, reward_folds=folds)


def _bias_inputs(cfg: RunConfig, model: nn.Module | None = None, ds=None) -> Inputs:
    """Texts -> model inputs (sentence embeddings for the project's head, token ids for a
    transformers classifier) -> target; the data as BiasData."""
    if model is not None or ds is not None:
        raise UserError("the Python API edits image classifiers given as objects; for text, point target.hf "
                        "at a transformers folder")
    ds = load_text_dataset(cfg.dataset, cfg.data_root, columns=cfg.data_columns or None)
    splits = text_splits(ds)
    originals, swapped = [a for a, _, _ in ds.pairs], [b for _, b, _ in ds.pairs]
    if cfg.target.hf:
        model, tokenizer = load_sequence_classifier(cfg.target.hf)
        setattr(model, PACKED_INPUTS, ("input_ids", "attention_mask"))
        # One call: texts and both sides of the pairs share one padded length.
        x, pair_original, pair_swapped = _packed(tokenizer, ds.texts, originals, swapped, cfg.target.max_length)
        meta = {"source": "transformers", "hf": cfg.target.hf, "class": type(model).__name__,
                "max_length": cfg.target.max_length, "dataset": ds.name, "data_source": ds.source}
    else:
        emb = dataset_embeddings(ds)
        x, pair_original, pair_swapped = emb["texts"], emb["pair_original"], emb["pair_swapped"]
        model, meta = load_text_head(ds.name, torch.from_numpy(x[splits.fit]),
                                     torch.from_numpy(ds.labels[splits.fit]), seed=cfg.target_seed,
                                     extra_meta={"data_source": ds.source, "encoder": "all-MiniLM-L6-v2 (mean)"})
        if edits_encoder(cfg.edit):  # the head on the encoder, from token ids
            model, tokenizer = sentence_classifier(model, encoder_path())
            x, pair_original, pair_swapped = _packed(tokenizer, ds.texts, originals, swapped, MAX_TOKENS)
            meta = {**meta, "architecture": f"{meta['architecture']}, the encoder in the network"}
    check_fits(model, torch.from_numpy(x[:2]), 2, f"the target ({type(model).__name__})")
    data = bias_data(ds.labels, ds.membership, ds.groups, splits, x, pair_original, pair_swapped,
                     np.asarray([g for _, _, g in ds.pairs], np.int64))
    return Inputs(*_with_fingerprint(model, meta), data=data)


def _packed(tokenizer, texts: list[str], originals: list[str], swapped: list[str], max_length: int):
    """Token ids of the texts and of both sides of the pairs, packed in one call so that all
    share one padded length."""
    packed = pack_texts(tokenizer, texts + originals + swapped, max_length).numpy()
    n, m = len(texts), len(originals)
    return packed[:n], packed[n:n + m], packed[n + m:]


def _bias_parts(cfg: RunConfig, inputs: Inputs) -> Parts:
    def task(seed: int) -> BiasTask:
        return BiasTask(inputs.data, samples_per_set=cfg.samples.per_set, seed=seed,
                        objective=cfg.bias.objective, temperature=cfg.bias.temperature,
                        reward_pools=tuple(cfg.bias.reward_pools), calibration_coef=cfg.bias.calibration_coef,
                        pairs_per_set=cfg.bias.pairs_per_set)

    return Parts(inputs.model, inputs.meta, task=task(cfg.seed), reward_folds=[task(s) for s in fold_seeds(cfg)])


# Per task: (its inputs: data and target, the expensive part; its parts: the task on them).
TASK_BUILDERS = {"unlearning": (_unlearning_inputs, _unlearning_parts), "bias": (_bias_inputs, _bias_parts)}
_PROCESS_INPUTS: dict[str, Inputs] = {}
_PROCESS_PARTS: dict[str, Parts] = {}


def _key(cfg: RunConfig, fields: set[str]) -> str:
    return json.dumps(cfg.model_dump(mode="json", include=fields), sort_keys=True)


def build_inputs(cfg: RunConfig, model: nn.Module | None = None, data=None) -> Inputs:
    """The run's data and target, built once per process and config (a given `model` object or
    dataset `data` is used as it is, and not cached)."""
    if model is not None or data is not None:
        return TASK_BUILDERS[cfg.task][0](cfg, model=model, ds=data)
    if cfg.target.python_object:
        raise UserError(f"this run edited a Python object ({cfg.target.python_object}) that its config cannot "
                        f"rebuild: pass the model to rledit_ray.edit(...) again")
    # An edit of the bias encoder needs the encoder in the target, and token ids as inputs.
    key = _key(cfg, INPUT_FIELDS) + f"|encoder={edits_encoder(cfg.edit)}"
    if key not in _PROCESS_INPUTS:
        _PROCESS_INPUTS[key] = TASK_BUILDERS[cfg.task][0](cfg)
    return _PROCESS_INPUTS[key]


def build_parts(cfg: RunConfig, inputs: Inputs | None = None) -> Parts:
    """The run's Parts over `inputs` (built here when not given: then once per process and config)."""
    if inputs is not None:
        return TASK_BUILDERS[cfg.task][1](cfg, inputs)
    key = _key(cfg, PARTS_FIELDS)
    if key not in _PROCESS_PARTS:
        _PROCESS_PARTS[key] = TASK_BUILDERS[cfg.task][1](cfg, build_inputs(cfg))
    return _PROCESS_PARTS[key]


# ----------------------------------------------------------------------------- shipping to EnvRunners
def travel_by_value(model: nn.Module) -> None:
    """A class loaded from a user's file (--model models.py:Net) cannot be imported on another
    node: have Ray pickle it by value wherever the model is sent."""
    from ray import cloudpickle

    if is_file_module(model):
        cloudpickle.register_pickle_by_value(sys.modules[type(model).__module__])


def ship_parts(parts: Parts):
    """Put the rollout half of `parts` into Ray's object store; EnvRunners on any node get the
    same bytes (an ObjectRef in their env_config). Needs a running Ray."""
    import ray

    travel_by_value(parts.model)
    rollout = Parts(parts.model, parts.meta,
                    task=parts.task.for_rollouts() if parts.task is not None else None,
                    requests=parts.requests.for_rollouts() if parts.requests is not None else None,
                    reward_folds=[task.for_rollouts() for task in parts.reward_folds])
    return ray.put(rollout)


_SHIPPED: dict[str, Parts] = {}


def _received_parts(ref) -> Parts:
    """The driver's Parts in this process (once per process), after checking that the target's
    weights are the driver's."""
    import ray

    key = ref.hex()
    if key not in _SHIPPED:
        parts = ray.get(ref)
        got, expected = state_fingerprint(parts.model), parts.meta.get("fingerprint")
        if got != expected:
            raise UserError(f"EnvRunner (pid {os.getpid()}) received a target whose weights hash to {got}, "
                            f"not the driver's {expected}: restart the run")
        print(f"EnvRunner process {os.getpid()}: target {got} (the driver's), built nothing locally",
              file=sys.stderr, flush=True)
        _SHIPPED[key] = parts
    return _SHIPPED[key]


# ----------------------------------------------------------------------------- worlds
def _as_config(config: RunConfig | dict) -> RunConfig:
    if isinstance(config, RunConfig):
        return config.check()
    # RLlib hands the env_config back with the agent's extra keys; the world ignores them.
    return build_config({k: v for k, v in dict(config).items() if k not in AGENT_ONLY_KEYS}, where="env_config")


def build_world(config: RunConfig | dict, parts: Parts | None = None) -> EditWorld:
    """A world of `config` over `parts` (built here, once per process, when not given)."""
    cfg = _as_config(config)
    torch.set_num_threads(cfg.torch_threads)
    parts = parts if parts is not None else build_parts(cfg)
    world = WORLD_CLASSES[cfg.world](
        copy.deepcopy(parts.model), cfg.edit, parts.task, cfg.world_settings(),
        prefix_cache=parts.prefix_cache, requests=parts.requests, reward_folds=parts.reward_folds,
    )
    world.parts, world.target_metadata = parts, parts.meta
    return world


def build_env(env_config: dict) -> EditWorld | WorldBatch:
    """RLlib's env creator. The worlds are built over the Parts the driver shipped (when the
    env_config carries them), else over Parts built here. RLlib asks for all sub-envs of an
    EnvRunner at once (adding `num_envs`) when the agent's `vectorize` is "batched"; they
    become one WorldBatch."""
    env_config = dict(env_config)
    num_envs = env_config.pop("num_envs", None)
    ref = env_config.get(PARTS_KEY)
    cfg = _as_config(env_config)
    parts = _received_parts(ref) if ref is not None else None
    if num_envs is None:
        return build_world(cfg, parts)
    return WorldBatch(lambda: build_world(cfg, parts), int(num_envs))


def make_mask_world(**config) -> EditWorld:
    return build_world({**config, "world": "mask"})


def make_shift_world(**config) -> EditWorld:
    return build_world({**config, "world": "shift"})
