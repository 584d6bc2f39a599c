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
   Records can be much larger than the inputs (a transformer's hidden states), so two things
   keep them small. A record nothing downstream reads (the output of a transformer layer that
   only feeds the next, stubbed, layer) is found at build time, by replaying with it poisoned
   (NaN) and seeing the logits unchanged; its stub answers with a tensor of the same shape that
   takes no memory. Packed texts (an "attention_mask" among the model's packed inputs) are
   recorded sorted by length, in chunks cut to their longest text, so padding costs neither
   memory nor compute. An input set whose records would still exceed `MEMO_BUDGET` bytes is
   evaluated in full instead (one log line).
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
from typing import Callable

import torch
from torch import nn

from rledit_ray.cache import BUILD_THREADS, cached_tensor, fingerprint, state_fingerprint
from rledit_ray.targets.forward import CHUNK, PACKED_INPUTS, Split, call_model, model_device, outputs_close
from rledit_ray.targets.memo import MEMO_BUDGET, MemoSplit, memo_split

__all__ = ["PACKED_INPUTS", "Split", "SequentialSplit", "FullSplit", "MemoSplit", "call_model", "split_model"]
log = logging.getLogger(__name__)

CACHE_BYTES = 4 << 30  # a sequential prefix bigger than this is recomputed, not written to disk
_EDIT_TOLERANCE = 1e-5  # split vs full pass under perturbed weights


# ---------------------------------------------------------------------- two of the three kinds (memo: targets/memo.py)
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


# ---------------------------------------------------------------------- choosing one
def split_model(model: nn.Module, edited_modules: list[str], example_x: torch.Tensor,
                memo_budget: int = MEMO_BUDGET) -> Split:
    """The cheapest split of `model` that stays exact while the weights of `edited_modules`
    (submodule names, in model order) change, checked on `example_x` (a few input rows)."""
    example_x = example_x.to(model_device(model))
    edited = list(edited_modules)
    if isinstance(model, nn.Sequential) and not getattr(model, PACKED_INPUTS, None):
        stages = [name for name, _ in model.named_children()]
        k = min(stages.index(name.split(".")[0]) for name in edited)
        split = SequentialSplit(model, k)
        if _exact_under_edit(split, edited, example_x):
            return split
    split, why = memo_split(model, edited, example_x)
    if split is not None and not _exact_under_edit(split, edited, example_x):
        split.by_length = False  # a model whose outputs change when trailing padding is cut
        if not _exact_under_edit(split, edited, example_x):
            split, why = None, "its output depends on the edited weights before the edited module runs (tied weights?)"
    if split is not None:
        split.budget = memo_budget  # not before: the checks above must replay, whatever the budget
        return split
    _warn_once(f"cannot split {type(model).__name__} at {edited[0]} ({why}): "
               "evaluating the whole model at every step")
    return FullSplit(model)


def _exact_under_edit(split: Split, edited: list[str], x: torch.Tensor) -> bool:
    """Whether the split still equals the full pass once the edited weights change (the prefix
    computed before the change, as in a world)."""
    cached = split.prefix(x)
    with _perturbed([split.model.get_submodule(name) for name in edited]), torch.inference_mode():
        return outputs_close(call_model(split.model, x), split.suffix(cached), _EDIT_TOLERANCE)


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


_WARNED: set[str] = set()


def _warn_once(message: str) -> None:
    """Once per process: the sub-envs of an EnvRunner each build a split of the same model."""
    if message not in _WARNED:
        _WARNED.add(message)
        log.warning(message)
