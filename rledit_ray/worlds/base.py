"""The machinery MaskWorld and ShiftWorld share: a gymnasium env over a target network.

An episode edits a private copy of the target for `episode_length` steps. Each step:
1. decode the flat action into low-rank factors per edited layer, D = U V^T / r, with U in
   [-1, 1] and V in [0, 1] (V >= 0 breaks the U/V sign symmetry, a saddle where the policy
   gradient vanishes; docs/design.md, "Measured findings");
2. let the subclass update its state from D and write the edited matrix in place;
3. run only the part of the network an edit can change on what the frozen rest computed
   once for the reward samples (targets/split.py), and score the logits with the task.

Observation: what `settings.observation` names, built by its observer (worlds/observation.py):
"weights", the edited weights in units of their original spread (exact, or a fixed random
sketch past `obs_budget` values), the reward terms and t / T; "rowwise" (worlds/rowwise.py),
the request described by data, per output row.

Requests: given `requests` (tasks/requests.py), each reset samples the episode's forget
class from its training requests (or takes the one `use_request` pinned), so one world
serves a distribution of edit requests.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import sys

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from rledit_ray import defaults as D
from rledit_ray.cache import fingerprint
from rledit_ray.errors import UserError
from rledit_ray.targets.split import split_model
from rledit_ray.worlds.bases import basis_sizes, factor_bases, spelled_basis
from rledit_ray.worlds.layers import EditLayer, resolve_edit_layers
from rledit_ray.worlds.observation import WeightsObservation
from rledit_ray.worlds.rowwise import RowwiseObservation
from rledit_ray.worlds.settings import OBSERVATIONS, WorldSettings

log = logging.getLogger(__name__)
OBSERVERS = {"weights": WeightsObservation, "rowwise": RowwiseObservation}
assert tuple(OBSERVERS) == OBSERVATIONS, "worlds/settings.py names the observations built here"
# Reward terms put into the observation when a task does not declare its own `observed_terms`.
OBSERVED_TERMS = ("utility", "objective")


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        chosen = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    elif device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device '{device}' requested but no CUDA GPU is visible: use device: auto or cpu")
    elif device.startswith("cuda:") and int(device[5:]) >= torch.cuda.device_count():
        raise UserError(f"device '{device}' requested but only {torch.cuda.device_count()} CUDA GPU(s) are visible")
    else:
        chosen = torch.device(device)
    _announce_device(device, chosen)
    return chosen


_ANNOUNCED: set = set()


def _announce_device(asked: str, chosen: torch.device) -> None:
    """One line per process and device: on a cluster, which card (if any) this process's
    worlds use is otherwise invisible (Ray's CUDA_VISIBLE_DEVICES picks it)."""
    if chosen.type in _ANNOUNCED:
        return
    _ANNOUNCED.add(chosen.type)
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    # Ray workers (EnvRunners) leave logging unconfigured, so INFO would vanish there:
    # write to stderr instead, which Ray keeps in the worker's log file.
    say = log.info if log.isEnabledFor(logging.INFO) else _to_stderr
    if chosen.type == "cuda":
        say("worlds in process %d use %s (%s; CUDA_VISIBLE_DEVICES=%s)", os.getpid(), chosen,
            torch.cuda.get_device_name(chosen), visible)
    elif asked == "auto":
        say("worlds in process %d use the CPU: no CUDA GPU visible (CUDA_VISIBLE_DEVICES=%s)",
            os.getpid(), visible)
    else:
        say("worlds in process %d use %s (device: %s)", os.getpid(), chosen, asked)


def _to_stderr(message: str, *args) -> None:
    print(message % args, file=sys.stderr, flush=True)


class EditWorld(gym.Env):
    """Base class; subclasses define the edit state (`_reset_state`, `_edit`)."""

    metadata = {"render_modes": []}
    kind = ""  # "mask" or "shift": the key of the world's defaults

    def __init__(self, model: nn.Module, edit: list[str], task, settings: WorldSettings | None = None,
                 prefix_cache: dict | None = None, requests=None, reward_folds=()):
        self.settings = settings or WorldSettings()
        if self.settings.step_size is None:
            self.settings = dataclasses.replace(self.settings, step_size=D.STEP_SIZE[self.kind])
        self.settings.check()
        self.device = resolve_device(self.settings.device)
        self.requests = requests.to(self.device) if requests is not None else None
        self.pinned_request = None
        self.model = model.to(self.device).eval().requires_grad_(False)
        self.layers: list[EditLayer] = resolve_edit_layers(self.model, edit)
        self.original = [layer.read().clone() for layer in self.layers]
        # One step size fits every layer because edits are measured in units of W0's spread.
        self.scales = [float(w.std().clamp_min(1e-8)) if w.numel() > 1 else float(w.abs().clamp_min(1e-8))
                       for w in self.original]

        first_task = self.requests.task(self.requests.train_classes[0]) if self.requests is not None else task
        self.split = split_model(self.model, [layer.module_name for layer in self.layers],
                                 first_task.reward_x[:2])
        # Sub-envs of one runner pass the same dict: the prefix runs once per process.
        self._prefix_cache = prefix_cache if prefix_cache is not None else {}
        self.request = None
        self._references: dict[str, tuple] = {}  # task key -> (reference logits, initial terms)
        if self.requests is not None:
            if reward_folds:
                raise UserError("samples.folds draws one request's reward sets: a generalist cannot use them")
            self._use_request(self.requests.train_classes[0])
        else:
            self._use_task(task.to(self.device), "")
        # Reward sample sets ES cycles through (use_reward_fold) after set 0, the task's own.
        self.reward_folds = [fold.to(self.device) for fold in reward_folds]
        self.fold = 0
        self.observed_terms = tuple(getattr(self.task, "observed_terms", OBSERVED_TERMS))

        r, (k_out, k_in) = self.settings.rank, basis_sizes(self.settings.factor_basis)
        for layer in self.layers:  # beyond min(m, n), U V^T spans nothing more, and the action only grows
            most = min(k_out or layer.rows, k_in or layer.cols)
            if r > most:
                basis = f", factor_basis {spelled_basis(self.settings.factor_basis)}" if k_out or k_in else ""
                raise UserError(f"rank {r} exceeds what layer '{layer.module_name}' ({layer.rows} x {layer.cols}{basis}) "
                                f"can hold: choose a rank of at most {most}")
        self.bases = self._factor_bases() if k_out or k_in else None
        # The agent's view: the factors' sizes (a side's k when it has a basis).
        self.factor_layout = [
            {"name": layer.module_name, "m": k_out or layer.rows, "n": k_in or layer.cols, "rank": r}
            for layer in self.layers
        ]
        n_act = sum(r * (entry["m"] + entry["n"]) for entry in self.factor_layout)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (n_act,), np.float32)
        self.observer = OBSERVERS[self.settings.observation](self)
        self.obs_layout = self.observer.layout  # what the agent needs to unpack an observation
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (self.observer.size,), np.float32)
        self.t = 0
        self.nonfinite_actions = 0  # steps whose action held NaN or inf (see apply_action)
        self._reset_state()
        self.matrices = list(self.original)

    # ------------------------------------------------------------------ subclass hooks
    def _reset_state(self) -> None:
        raise NotImplementedError

    def _edit(self, i: int, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Update layer i's state from the low-rank delta D = U V^T / r (given as its
        factors, so that subclasses can fuse the product into their update with one
        addmm); return the layer's new matrix."""
        raise NotImplementedError

    # ------------------------------------------------------------------ gymnasium API
    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        self._reset_state()
        for layer, w0 in zip(self.layers, self.original):
            layer.write(w0)
        # The edited matrices as last written (observed without reading them back).
        self.matrices = list(self.original)
        self.observer.on_reset(self)
        if self.requests is not None:  # after the restore: a request's reference is the original network
            k = self.pinned_request if self.pinned_request is not None else self.requests.sample(self.np_random)
            self._use_request(k)
        self._switch_reward_fold()
        self.terms = dict(self.initial_terms)
        self._score = self._weighted(self.terms)
        self.last_logits = self.reference_logits
        return self.observer.observe(self), dict(self.terms)

    def step(self, action):
        self.apply_action(action)
        return self.finish_step(self.reward_logits())

    # The three phases of a step, separate so that `WorldBatch` can run the middle one
    # (the forward pass) for many worlds in one call.
    def apply_action(self, action) -> None:
        """Decode the action and write the edited matrices into the model.

        An action of another shape than the action space's is the caller's bug: refused with
        ValueError (a (75, 1) array would otherwise reshape silently into a (75,) action). A
        NaN or inf entry, as a diverging policy emits, is mapped into the box like any
        out-of-range value: NaN to 0 (the box's centre), +inf to 1, -inf to -1. So the edited
        weights, the reward and the observation stay finite; `nonfinite_actions` counts such
        steps and the first one is logged (docs/errors.md)."""
        with np.errstate(over="ignore"):  # a float64 beyond float32's range becomes inf, mapped below
            action = np.asarray(action, dtype=np.float32)
        if action.shape != self.action_space.shape:
            raise ValueError(f"action of shape {action.shape} for an action space of shape {self.action_space.shape}")
        if not np.isfinite(action).all():
            self.nonfinite_actions += 1
            if self.nonfinite_actions == 1:
                log.warning("a %s world got an action with NaN or inf entries: mapped NaN to 0 and inf to the "
                            "bounds (a diverging policy?)", self.kind)
            action = np.nan_to_num(action, nan=0.0, posinf=1.0, neginf=-1.0)
        action = torch.as_tensor(np.clip(action, -1.0, 1.0), dtype=torch.float32, device=self.device)
        with torch.inference_mode():
            for i, (layer, (u, v)) in enumerate(zip(self.layers, self.factors(action))):
                self.matrices[i] = self._edit(i, u, v)
                layer.write(self.matrices[i])
        self.observer.after_edit(self)

    def reward_logits(self) -> torch.Tensor:
        """The edited network's logits on the reward samples (suffix only)."""
        return self._edited_suffix(self.reward_h)

    def low_rank_edit(self):
        """The current edit as a LowRankEdit (targets/forward.py) where the world keeps one and
        the split can use it (ShiftWorld), else None: the model's weights are then what counts."""
        return None

    def _edited_suffix(self, cached) -> torch.Tensor:
        edit = self.low_rank_edit()
        return self.split.suffix(cached) if edit is None else self.split.suffix(cached, edit)

    def finish_step(self, logits: torch.Tensor):
        """Score the edited logits: the rest of gymnasium's step() tuple."""
        self.last_logits = logits  # the row-wise observation describes them
        self.terms = self.reward_task.reward_terms(logits, self.reference_logits)
        score = self._weighted(self.terms)
        if self.settings.reward_mode == "improvement":
            reward = score - self._score
        else:
            reward = score - self._weighted(self.initial_terms)
        self._score = score
        self.t += 1
        # The edit is finished after T steps: a true terminal state (t/T is observed), so
        # PPO must not bootstrap past it.
        terminated = self.t >= self.settings.episode_length
        return self.observer.observe(self), float(reward), terminated, False, dict(self.terms)

    # ------------------------------------------------------------------ requests
    def use_request(self, k: int | None) -> None:
        """Pin the forget class of every following episode (None: sample training requests)."""
        if self.requests is None:
            raise UserError("this world serves one fixed request: configure a generalist: section")
        self.pinned_request = None if k is None else self.requests.check(k)

    def drop_request(self, k: int) -> None:
        """Forget what was prepared for request k (its task, cached activations), so that
        serving it again is timed from scratch."""
        if self.request == k:
            self.request = None
        self.requests.drop(k)
        self._references.pop(f"{k}:", None)
        for key in [key for key in self._prefix_cache if key.startswith(f"{k}:") or key.startswith(f"eval:{k}:")]:
            del self._prefix_cache[key]

    def _use_request(self, k: int) -> None:
        if k != self.request:
            self._use_task(self.requests.task(k), f"{k}:")
            self.request = k

    def use_reward_fold(self, k: int) -> None:
        """Score the episodes from the next reset on on reward sample set k (samples.folds;
        0: the task's own). Evaluation is unchanged: it reads the task's pools, not its reward
        samples."""
        if not 0 <= k <= len(self.reward_folds):
            raise ValueError(f"reward fold {k} of a world holding {len(self.reward_folds) + 1}")
        self.fold = k

    def _switch_reward_fold(self) -> None:
        """At reset, after the restore: a set's reference is the original network."""
        k = self.fold
        task = self.reward_folds[k - 1] if k else self.task
        if self.reward_task is not task:
            self._use_reward(task, f"{self._key}fold{k}:" if k else self._key)

    def _use_task(self, task, key: str) -> None:
        """Make `task` the episode's task; `key` keeps its cached activations apart from
        other requests' (the empty key of a single-request world keeps the old names)."""
        self.task, self._key = task, key
        self._use_reward(task, key)

    def _use_reward(self, task, key: str) -> None:
        """Score rewards with `task`'s reward samples, cached under `key`."""
        self.reward_task = task
        self.reward_h = self._prefix_activations(f"{key}reward", task.reward_x)
        # The original network's logits and terms for this task: computed once, not at every
        # switch back to the request (a generalist switches at most resets).
        if key not in self._references:
            reference = self.split.suffix(self.reward_h)
            self._references[key] = (reference, task.reward_terms(reference, reference))
        self.reference_logits, self.initial_terms = self._references[key]

    # ------------------------------------------------------------------ helpers
    def _factor_bases(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        if self.requests is not None:
            raise UserError("factor_basis is built from one request's reward samples: a generalist cannot use it")
        # Sub-envs of one runner share them: a wide layer's input moments take seconds (MiniLM's
        # FFN output over RedditBias's reward pool: ~20 s), the same for every world.
        key = "bases:" + fingerprint(*self.original, self.task.reward_x, [layer.module_name for layer in self.layers],
                                     list(basis_sizes(self.settings.factor_basis)), self.settings.rank)
        if key not in self._prefix_cache:
            self._prefix_cache[key] = factor_bases(self.model, self.layers, self.original, self.settings.factor_basis,
                                                   lambda: self.split.suffix(self.reward_h), self.settings.rank)
        return self._prefix_cache[key]

    def factors(self, action: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Flat action -> one (U, V) pair per layer: U (rows x r) in [-1, 1], V (cols x r) in [0, 1];
        with factor bases, U = B_u a_u and V = B_v a_v + V_0 for the action's a_u, a_v in [-1, 1]
        (worlds/bases.py)."""
        r, out, start = self.settings.rank, [], 0
        for i, entry in enumerate(self.factor_layout):
            m, n = entry["m"], entry["n"]
            u = action[start : start + m * r].reshape(m, r)
            v = action[start + m * r : start + (m + n) * r].reshape(n, r)
            start += (m + n) * r
            if self.bases is None:
                out.append((u, (v + 1.0) / 2.0))
            else:
                basis_u, basis_v, v_start = self.bases[i]
                out.append((basis_u @ u, torch.addmm(v_start, basis_v, v)))
        return out

    def decode(self, action: torch.Tensor) -> list[torch.Tensor]:
        """Flat action -> one (rows, cols) delta per layer, D = U V^T / r."""
        return [u @ v.T / self.settings.rank for u, v in self.factors(action)]

    def _weighted(self, terms: dict) -> float:
        s = self.settings
        return s.utility_coef * terms["utility"] + s.objective_coef * terms["objective"]

    def _prefix_activations(self, key: str, x: torch.Tensor):
        """What the split caches for input set `key` (a tensor for a Sequential target): computed
        by the first world of the process that asks, then shared; an evaluation pool's is kept
        on disk for the next process too (Split.prefix)."""
        if key not in self._prefix_cache:
            self._prefix_cache[key] = self.split.prefix(x, persist=key.startswith("eval:"))
        return self._prefix_cache[key]

    # ------------------------------------------------------------------ evaluation
    def logits(self, name: str, labeled) -> torch.Tensor:
        """Logits of the current edited network on a named evaluation set, reusing cached
        prefix activations (identical to a full forward pass)."""
        return self._edited_suffix(self._prefix_activations(f"eval:{self._key}{name}", labeled.x))

    def predict(self, name: str, labeled) -> torch.Tensor:
        """Predicted labels of the current edited network on a named evaluation set."""
        if not len(labeled):
            return torch.empty(0, dtype=torch.long)
        return self.logits(name, labeled).argmax(1)

    def scores(self, name: str, labeled) -> torch.Tensor:
        """Positive-class (label 1) probability on a named evaluation set (binary tasks)."""
        if not len(labeled):
            return torch.empty(0)
        return self.logits(name, labeled).softmax(1)[:, 1]

    def measure(self):
        """What the task's `metrics` takes: `scores` when it declares metric_input =
        "scores" (AUC-based tasks), else `predict`."""
        return self.scores if getattr(self.task, "metric_input", "labels") == "scores" else self.predict

    def task_metrics(self, pools=("fit", "validation", "test")) -> dict:
        return self.task.metrics(self.measure(), pools=pools)

    def edited_state_dict(self) -> dict[str, torch.Tensor]:
        """The whole edited network's weights (CPU tensors), ready for safetensors."""
        return {k: v.detach().cpu().contiguous().clone() for k, v in self.model.state_dict().items()}
