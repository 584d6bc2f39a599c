"""Run only the part of a network that an edit can change: suffix-only evaluation.

A world evaluates the edited network on the same inputs at every step, and an edit of some
layers cannot change what the network computed before those layers first ran. So that part
runs once per input set (`Split.prefix`, whose result the world caches) and every step runs
only the rest (`Split.suffix`). `split_model` picks the first mechanism that works:

1. "sequential": an `nn.Sequential` is cut before its first top-level stage holding an edited
   layer; the cache is that stage's input, a tensor (what `WorldBatch` stacks on).
2. "memo", for any other module, with no tracing. By causality, a submodule call that finished
   before the first call of an edited module started cannot depend on the edit. The prefix runs
   the model once and records, in call order, the outputs of the *maximal frozen* submodules
   (whose subtree holds no edited module and shares no parameter with one, but whose parent's
   does) for those calls. Each step runs the model with those modules' `forward` replaced by
   stubs returning the recorded outputs, keyed by module name and call index, so only the glue
   code, the edited modules and what follows them compute. Keys are names, so the records
   serve any copy of the network; the stubs are installed for the call only, so the model
   stays picklable and computes its ordinary forward pass outside it.
   Glue code may change a recorded output in place (`out += identity`), which would corrupt
   the records from step to step: at build time record logits, replay logits and a second
   replay's must agree on an example, else the stubs hand out clones (recorded before any such
   change), else the model is evaluated in full.
   Records can be much larger than the inputs (a transformer's hidden states): an input set
   whose records would exceed `MEMO_BUDGET` bytes is evaluated in full instead (one log line).
3. "full": the whole model at every step, with one log line saying why (e.g. the edited module
   is never called by `forward`).

Every split is checked at build time against the full forward pass with the edited weights
perturbed, which catches weights an edit reaches without calling the module (tied weights,
`F.linear(x, self.fc.weight)` in glue code): such a model falls back to the next mechanism.

What to expect: a suffix costs what the network costs from the first edited layer on, plus a
few microseconds per stubbed module. Measured on one CPU thread, a MaskWorld with 512 reward
images of 28x28 on a third-party MNIST CNN (conv32-64-128, fc 1152-256-10) edited in its last
layer: ~1,200 steps/s with "memo" against ~2.4 in full; the project's Sequential `mnist_cnn`
edited in fc2: ~1,500 steps/s.
"""
from __future__ import annotations

import inspect
import logging
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.utils._pytree as pytree
from torch import nn

from rledit_ray.cache import BUILD_THREADS, cached_tensor, fingerprint, state_fingerprint

log = logging.getLogger(__name__)

PACKED_INPUTS = "rledit_packed_inputs"
CHUNK = 4096  # rows per forward pass: bounds the activations' memory on big evaluation pools
CACHE_BYTES = 4 << 30  # a sequential prefix bigger than this is recomputed, not written to disk
MEMO_BUDGET = 1 << 30  # bytes of recorded outputs per input set
_TOLERANCE = 1e-6  # record vs replay: the same operations on the same numbers
_EDIT_TOLERANCE = 1e-5  # split vs full pass under perturbed weights


def call_model(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Logits of `model` on the batch `x`. A model carrying the attribute PACKED_INPUTS (a tuple of
    names, e.g. ("input_ids", "attention_mask")) takes x packed as (N, len(names), L) int64 and is
    called as model(**{name: x[:, i]}); a result with `.logits` (a transformers ModelOutput) gives
    its logits."""
    names = getattr(model, PACKED_INPUTS, None)
    out = model(**{name: x[:, i] for i, name in enumerate(names)}) if names else model(x)
    return out.logits if hasattr(out, "logits") else out


# ---------------------------------------------------------------------- the three kinds
class Split:
    """How a world evaluates its model: `suffix(prefix(x))` equals `call_model(model, x)` for the
    model's current weights; `prefix` runs once per input set, `suffix` at every step."""

    kind = ""
    sequential_suffix: nn.Sequential | None = None

    def __init__(self, model: nn.Module):
        self.model = model
        self.device = _device(model)

    def prefix(self, x: torch.Tensor, persist: bool = False) -> Any:
        """What `suffix` takes for the inputs `x`; `persist`: keep it on disk where the split can."""
        raise NotImplementedError

    def suffix(self, cached) -> torch.Tensor:
        raise NotImplementedError

    def rows(self, cached) -> int:
        return len(cached)


class SequentialSplit(Split):
    kind = "sequential"

    def __init__(self, model: nn.Sequential, k: int):
        super().__init__(model)
        self.head = model[:k] if k else nn.Identity()
        self.sequential_suffix = model[k:]

    def prefix(self, x: torch.Tensor, persist: bool = False) -> torch.Tensor:
        """`persist` (evaluation pools): the prefix costs seconds (MNIST's 70,000 images through
        the conv stages: ~10 s on one thread) and is the same every run, so it is cached on disk,
        keyed by what it is computed from, at a fixed thread count (CPU results differ in the
        last bits across counts). A GPU computes it fast enough not to cache; reward samples
        are computed at the caller's thread count, as a run's rewards always were."""
        def compute() -> torch.Tensor:
            return _chunked(lambda c: self.head(c.to(self.device)), x)

        key = self._prefix_key(x) if persist and len(x) and self.device.type == "cpu" else None
        return compute() if key is None else cached_tensor("activations", key, compute, max_bytes=CACHE_BYTES)

    def _prefix_key(self, x: torch.Tensor) -> str | None:
        """Fingerprint of the prefix's code, weights and input; None when some module's code has
        no source to read (defined interactively), so its behaviour cannot be keyed."""
        if not isinstance(self.head, nn.Sequential) or not len(self.head):  # an edit of the first stage: no prefix
            return None
        try:
            code = [inspect.getsource(type(m)) for m in self.head.modules() if not type(m).__module__.startswith("torch.")]
        except (OSError, TypeError):
            return None
        return fingerprint("sequential prefix", torch.__version__, BUILD_THREADS, repr(self.head), code,
                           state_fingerprint(self.head), x)

    def suffix(self, h: torch.Tensor) -> torch.Tensor:
        return _chunked(self.sequential_suffix, h)


class FullSplit(Split):
    kind = "full"

    def prefix(self, x: torch.Tensor, persist: bool = False) -> torch.Tensor:
        return x.to(self.device)

    def suffix(self, x: torch.Tensor) -> torch.Tensor:
        return _chunked(lambda c: call_model(self.model, c), x)


@dataclass
class MemoCache:
    """One input set for a MemoSplit: per chunk, the inputs (the glue code still reads them) and
    the recorded outputs {(module name, call index): output}, or None for a set evaluated in full."""

    chunks: list[tuple[torch.Tensor, dict | None]]

    def __len__(self) -> int:
        return sum(len(x) for x, _ in self.chunks)


class MemoSplit(Split):
    kind = "memo"

    def __init__(self, model: nn.Module, edited: list[str], frozen: list[str], clone: bool,
                 budget: int = MEMO_BUDGET):
        super().__init__(model)
        self.edited = [model.get_submodule(name) for name in edited]
        self.frozen = {name: model.get_submodule(name) for name in frozen}
        self.clone = clone
        self.budget = budget

    def prefix(self, x: torch.Tensor, persist: bool = False) -> MemoCache:  # records stay in memory
        if not len(x):  # nothing to record; the model's own pass gives the (0, classes) logits
            return MemoCache([(x.to(self.device), None)])
        chunks, total = [], 0
        for i in range(0, len(x), CHUNK):
            inputs = x[i : i + CHUNK].to(self.device)
            records = None
            if total <= self.budget:
                records, _, _ = self.record(inputs)
                total += _nbytes(records)
            chunks.append((inputs, records))
        if total > self.budget:
            log.warning("recorded outputs of %s for %d rows would exceed %.3g GiB: evaluating these rows "
                        "with the whole model at every step", type(self.model).__name__, len(x),
                        self.budget / 2**30)
            chunks = [(inputs, None) for inputs, _ in chunks]
        return MemoCache(chunks)

    def suffix(self, cache: MemoCache) -> torch.Tensor:
        with torch.inference_mode():
            out = [self.replay(inputs, records) if records is not None else call_model(self.model, inputs)
                   for inputs, records in cache.chunks]
        return out[0] if len(out) == 1 else torch.cat(out)

    def record(self, x: torch.Tensor) -> tuple[dict, torch.Tensor, bool]:
        """Run the model once: (records, logits, whether an edited module was called)."""
        records, calls, state = {}, {}, {"depth": 0, "edit_started": False}

        def recorder(name: str, forward: Callable) -> Callable:
            def run(*args, **kwargs):
                if state["depth"]:  # a frozen module called inside another frozen one: not a stub's
                    return forward(*args, **kwargs)
                index = calls[name] = calls.get(name, -1) + 1
                state["depth"] += 1
                try:
                    out = forward(*args, **kwargs)
                finally:
                    state["depth"] -= 1
                if not state["edit_started"]:
                    # Cloned now, before the glue code can change it in place.
                    records[(name, index)] = _cloned(out) if self.clone else out
                return out
            return run

        def marker(forward: Callable) -> Callable:
            def run(*args, **kwargs):
                state["edit_started"] = True
                return forward(*args, **kwargs)
            return run

        replacements = [(m, lambda f, n=name: recorder(n, f)) for name, m in self.frozen.items()]
        replacements += [(m, marker) for m in self.edited]
        with torch.inference_mode(), _forwards_replaced(replacements):
            logits = call_model(self.model, x)
        return records, logits, state["edit_started"]

    def replay(self, x: torch.Tensor, records: dict) -> torch.Tensor:
        """The model's logits on `x` with recorded calls answered from `records`. Calls are
        counted exactly as `record` counted them, so index i is the same call."""
        calls, state = {}, {"depth": 0}

        def stub(name: str, forward: Callable) -> Callable:
            def run(*args, **kwargs):
                if state["depth"]:
                    return forward(*args, **kwargs)
                index = calls[name] = calls.get(name, -1) + 1
                key = (name, index)
                if key in records:
                    return _cloned(records[key]) if self.clone else records[key]
                state["depth"] += 1
                try:
                    return forward(*args, **kwargs)
                finally:
                    state["depth"] -= 1
            return run

        replacements = [(m, lambda f, n=name: stub(n, f)) for name, m in self.frozen.items()]
        with torch.inference_mode(), _forwards_replaced(replacements):
            return call_model(self.model, x)


# ---------------------------------------------------------------------- choosing one
def split_model(model: nn.Module, edited_modules: list[str], example_x: torch.Tensor,
                memo_budget: int = MEMO_BUDGET) -> Split:
    """The cheapest split of `model` that stays exact while the weights of `edited_modules`
    (submodule names, in model order) change, checked on `example_x` (a few input rows)."""
    example_x = example_x.to(_device(model))
    edited = list(edited_modules)
    if isinstance(model, nn.Sequential) and not getattr(model, PACKED_INPUTS, None):
        stages = [name for name, _ in model.named_children()]
        k = min(stages.index(name.split(".")[0]) for name in edited)
        split = SequentialSplit(model, k)
        if _exact_under_edit(split, edited, example_x):
            return split
    split, why = _memo_split(model, edited, example_x)
    if split is not None and not _exact_under_edit(split, edited, example_x):
        split, why = None, "its output depends on the edited weights before the edited module runs (tied weights?)"
    if split is not None:
        split.budget = memo_budget  # not before: the checks above must replay, whatever the budget
        return split
    _warn_once(f"cannot split {type(model).__name__} at {edited[0]} ({why}): "
               "evaluating the whole model at every step")
    return FullSplit(model)


def _memo_split(model: nn.Module, edited: list[str], x: torch.Tensor) -> tuple[MemoSplit | None, str]:
    frozen = maximal_frozen(model, edited)
    try:
        for clone in (False, True):
            split = MemoSplit(model, edited, frozen, clone)
            records, logits, edit_called = split.record(x)
            if not edit_called:
                return None, f"forward never calls {', '.join(edited)}"
            # Copies: with an in-place glue the logits can be the very tensor a replay changes.
            logits, first = logits.clone(), split.replay(x, records).clone()
            second = split.replay(x, records)
            if _close(logits, first, _TOLERANCE) and _close(first, second, _TOLERANCE):
                return split, ""
    except Exception as e:  # a module whose forward cannot be replaced (scripted, ...): not splittable
        return None, f"replaying recorded outputs failed: {type(e).__name__}: {e}"
    return None, "its code changes recorded outputs in a way replaying them cannot reproduce"


def maximal_frozen(model: nn.Module, edited: list[str]) -> list[str]:
    """Names of the submodules that no edit reaches (no edited module in their subtree, no
    parameter shared with one) whose parent an edit does reach, in model order."""
    edited_modules = {id(model.get_submodule(name)) for name in edited}
    edited_params = {id(p) for name in edited for p in model.get_submodule(name).parameters()}

    def reached(module: nn.Module) -> bool:
        return (any(id(m) in edited_modules for m in module.modules())
                or any(id(p) in edited_params for p in module.parameters()))

    frozen, seen = [], set()

    def walk(module: nn.Module, prefix: str) -> None:
        for name, child in module.named_children():
            if id(child) in seen:  # a module registered twice is one module: its first name
                continue
            seen.add(id(child))
            if id(child) in edited_modules:
                continue  # its own submodules only run once the edit has started
            if reached(child):
                walk(child, f"{prefix}{name}.")
            else:
                frozen.append(f"{prefix}{name}")

    walk(model, "")
    return frozen


def _exact_under_edit(split: Split, edited: list[str], x: torch.Tensor) -> bool:
    """Whether the split still equals the full pass once the edited weights change (the prefix
    computed before the change, as in a world)."""
    cached = split.prefix(x)
    with _perturbed([split.model.get_submodule(name) for name in edited]), torch.inference_mode():
        return _close(call_model(split.model, x), split.suffix(cached), _EDIT_TOLERANCE)


# ---------------------------------------------------------------------- helpers
_UNSET = object()


@contextmanager
def _forwards_replaced(replacements: list[tuple[nn.Module, Callable[[Callable], Callable]]]):
    """Give each module the forward `wrap(its forward)` for the duration of the block; undone
    afterwards, so that nothing of it is left to deep-copy, pickle or run by accident."""
    undo = []
    try:
        for module, wrap in replacements:
            undo.append((module, module.__dict__.get("forward", _UNSET)))
            module.forward = wrap(module.forward)
        yield
    finally:
        for module, before in reversed(undo):
            if before is _UNSET:
                del module.forward
            else:
                module.forward = before


@contextmanager
def _perturbed(modules: list[nn.Module]):
    """The modules' parameters plus fixed noise of their own scale, restored afterwards."""
    params = list({id(p): p for m in modules for p in m.parameters()}.values())
    saved = [p.detach().clone() for p in params]
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in params:
            scale = float(p.detach().abs().mean()) + 1e-2
            p.add_(torch.randn(p.shape, generator=gen).to(p) * scale)
    try:
        yield
    finally:
        with torch.no_grad():
            for p, before in zip(params, saved):
                p.copy_(before)


def _chunked(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        if len(x) <= CHUNK:
            return fn(x)
        return torch.cat([fn(x[i : i + CHUNK]) for i in range(0, len(x), CHUNK)])


def _cloned(out):
    return pytree.tree_map(lambda v: v.clone() if isinstance(v, torch.Tensor) else v, out)


def _nbytes(records: dict) -> int:
    tensors = {id(v): v for v in pytree.tree_leaves(list(records.values())) if isinstance(v, torch.Tensor)}
    return sum(t.nbytes for t in tensors.values())


def _close(a, b, tol: float) -> bool:
    if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor) or a.shape != b.shape:
        return False
    scale = max(1.0, float(a.detach().abs().max())) if a.numel() else 1.0
    return torch.allclose(a, b, rtol=tol, atol=tol * scale, equal_nan=True)


def _device(model: nn.Module) -> torch.device:
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


_WARNED: set[str] = set()


def _warn_once(message: str) -> None:
    """Once per process: the sub-envs of an EnvRunner each build a split of the same model."""
    if message not in _WARNED:
        _WARNED.add(message)
        log.warning(message)
