"""The "memo" split (targets/split.py, item 2): record the frozen submodules' outputs once per
input set, replay them at every step.

What is recorded, and how it is kept small, is described in targets/split.py; this module holds
the mechanism: recording and replaying calls through temporarily replaced `forward`s, finding
the records nothing reads, and cutting packed texts by length.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Callable

import torch
import torch.utils._pytree as pytree
from torch import nn

from rledit_ray.targets.forward import CHUNK, PACKED_INPUTS, LowRankEdit, Split, call_model, outputs_close
from rledit_ray.targets.pooled_tail import PooledTail

log = logging.getLogger(__name__)

TEXT_CHUNK = 256  # rows of packed texts per recorded chunk: each chunk is cut to its longest text
# Bytes of recorded outputs per input set: RedditBias's whole reward pool (~7,200 texts) through MiniLM's
# last layer records ~1.5 GB (its FFN activations and attention output); 24 GB machines hold several such sets.
MEMO_BUDGET = 4 << 30
_TOLERANCE = 1e-6  # record vs replay: the same operations on the same numbers
_CLOSED_FORM_TOLERANCE = 1e-4  # closed form vs replay: the LayerNorm's variance summed another way


@dataclass
class MemoCache:
    """One input set for a MemoSplit: per chunk, the inputs (the glue code still reads them) and
    the recorded outputs {(module name, call index): output}, or None for a set evaluated in full;
    `restore` puts the chunks' rows back in the input's order (None: they are in order)."""

    chunks: list[tuple[torch.Tensor, dict | None]]
    restore: torch.Tensor | None = None

    def __len__(self) -> int:
        return sum(len(x) for x, _ in self.chunks)


class MemoSplit(Split):
    kind = "memo"
    low_rank = True

    def __init__(self, model: nn.Module, edited: list[str], frozen: list[str], clone: bool,
                 budget: int = MEMO_BUDGET):
        super().__init__(model)
        self.edited = [model.get_submodule(name) for name in edited]
        self.frozen = {name: model.get_submodule(name) for name in frozen}
        self.clone = clone
        self.budget = budget
        self.unread: frozenset = frozenset()  # record keys nothing downstream reads
        self.by_length = True  # packed texts: sort by length and cut each chunk's padding
        # The model offers a closed form of its tail after the edit (targets/pooled_tail.py);
        # cleared for good once it fails its check on a chunk.
        self.closed_form = hasattr(model, "pooled_tail_norm")

    def prefix(self, x: torch.Tensor, persist: bool = False) -> MemoCache:  # records stay in memory
        if not len(x):  # nothing to record; the model's own pass gives the (0, classes) logits
            return MemoCache([(x.to(self.device), None)])
        pieces, restore = _text_chunks(self.model, x) if self.by_length else (None, None)
        if pieces is None:
            pieces = [x[i : i + CHUNK] for i in range(0, len(x), CHUNK)]
        chunks, total = [], 0
        for piece in pieces:
            inputs = piece.to(self.device)
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
        return MemoCache(chunks, None if restore is None else restore.to(self.device))

    def suffix(self, cache: MemoCache, edit: LowRankEdit | None = None) -> torch.Tensor:
        with torch.inference_mode():
            closed = None if edit is None else self.closed_form_suffixes(cache, [edit])
            if closed is not None:
                return closed[0]
            out = [self.replay(inputs, records, edit) if records is not None else call_model(self.model, inputs)
                   for inputs, records in cache.chunks]
            out = out[0] if len(out) == 1 else torch.cat(out)
            return out if cache.restore is None else out[cache.restore]

    def closed_form_suffixes(self, cache: MemoCache, edits: list[LowRankEdit]) -> torch.Tensor | None:
        """The logits under each of `edits` (of one layer, over the same original weights and
        basis, of one rank), (E, rows, classes), in closed form where the model offers one for
        the layer (targets/pooled_tail.py) and it gave the replay's logits on every chunk; else
        None. The edits share each read of what the closed form keeps."""
        if not self.closed_form:
            return None
        key = ("<pooled tail>", edits[0].key, edits[0].basis_key)
        with torch.inference_mode():
            kept = []
            for inputs, records in cache.chunks:
                if records is not None and key not in records:
                    records[key] = self._pooled_tail(inputs, records, edits[0])
                if records is None or records[key] is None:
                    return None
                kept.append(records[key])
            out = [self.model.pooled_logits(tail.pooled(_stacked_coefficients(edits, layer_input, projected),
                                                        torch.stack([e.a for e in edits])).flatten(0, 1))
                   .view(len(edits), len(layer_input), -1) for tail, layer_input, projected in kept]
            out = out[0] if len(out) == 1 else torch.cat(out, 1)
            return out if cache.restore is None else out[:, cache.restore]

    def _pooled_tail(self, x: torch.Tensor, records: dict, edit: LowRankEdit) -> tuple | None:
        """(PooledTail, the edited layer's input, its projection on the basis) of one chunk, from
        one replay of the unedited layer; None where the closed form does not hold."""
        norm_name = self.model.pooled_tail_norm(edit.name)
        names = getattr(self.model, PACKED_INPUTS, None) or ()
        if norm_name is None or "attention_mask" not in names:
            return None
        seen = {"norm": [], "layer": []}
        hooks = [self.model.get_submodule(name).register_forward_pre_hook(
                     lambda _m, args, calls=calls: calls.append(args[0]))
                 for name, calls in ((norm_name, seen["norm"]), (edit.name, seen["layer"]))]
        try:
            self.replay(x, records, replace(edit, a=torch.zeros_like(edit.a)))
        finally:
            for hook in hooks:
                hook.remove()
        if len(seen["norm"]) != 1 or len(seen["layer"]) != 1:
            return None
        mask = x[:, list(names).index("attention_mask")]
        tail = PooledTail.capture(seen["norm"][0], mask, self.model.get_submodule(norm_name))
        projected = records.get(("<projected input>", edit.basis_key, 0)) if edit.basis is not None else None
        if tail is None or (edit.basis is not None and projected is None):
            return None
        kept = (tail, seen["layer"][0], projected)
        # Checked against the replay on this edit and on a random one of its shape.
        noise = torch.randn(edit.a.shape, generator=torch.Generator().manual_seed(0)).to(edit.a)
        for a in (edit.a, edit.a + noise * (edit.a.std() + 1e-3)):
            trial = replace(edit, a=a)
            closed = self.model.pooled_logits(tail.pooled(_stacked_coefficients([trial], kept[1], projected), a[None])[0])
            if not outputs_close(self.replay(x, records, trial), closed, _CLOSED_FORM_TOLERANCE):
                log.warning("the closed form of %s's edit differs from the model's own pass: replaying it "
                            "(one forward of the tail per step)", edit.name)
                self.closed_form = False
                return None
        return kept

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
                    key = (name, index)
                    # Cloned now, before the glue code can change it in place.
                    records[key] = (_placeholder(out) if key in self.unread
                                    else _cloned(out) if self.clone else out)
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

    def replay(self, x: torch.Tensor, records: dict, edit: LowRankEdit | None = None) -> torch.Tensor:
        """The model's logits on `x` with recorded calls answered from `records`. Calls are
        counted exactly as `record` counted them, so index i is the same call. With `edit`, its
        layer computes its original output (computed at the first replay, then kept with the
        records: its input comes from frozen records, so it is the same at every step; so is its
        input's projection on the edit's basis) plus the low-rank term."""
        calls, state = {}, {"depth": 0}

        def stub(name: str, forward: Callable) -> Callable:
            def run(*args, **kwargs):
                if state["depth"]:
                    return forward(*args, **kwargs)
                index = calls[name] = calls.get(name, -1) + 1
                key = (name, index)
                if key in records:
                    return _cloned(records[key]) if self.clone and key not in self.unread else records[key]
                state["depth"] += 1
                try:
                    return forward(*args, **kwargs)
                finally:
                    state["depth"] -= 1
            return run

        def low_rank(forward: Callable) -> Callable:
            def run(inputs):
                index = calls[edit.name] = calls.get(edit.name, -1) + 1

                def kept(what: str, content: str, compute: Callable) -> torch.Tensor:
                    key = (what, content, index)  # "<" is in no module name: no record's key
                    if key not in records:
                        records[key] = compute(inputs)
                    return records[key]

                original = kept("<original output>", edit.key, edit.original_output)
                projected = kept("<projected input>", edit.basis_key, edit.project) if edit.basis is not None else None
                return edit.output(inputs, original, projected)
            return run

        replacements = [(m, lambda f, n=name: stub(n, f)) for name, m in self.frozen.items()]
        if edit is not None:
            replacements.append((self.model.get_submodule(edit.name), low_rank))
        with torch.inference_mode(), _forwards_replaced(replacements):
            return call_model(self.model, x)


def _stacked_coefficients(edits: list[LowRankEdit], layer_input: torch.Tensor,
                          projected: torch.Tensor | None) -> torch.Tensor:
    """Each edit's coefficients of each row, (..., E, R), from one product with their b's side by side."""
    both = replace(edits[0], b=torch.cat([e.b for e in edits], 1)).coefficients(layer_input, projected)
    return both.view(*both.shape[:-1], len(edits), -1)


def memo_split(model: nn.Module, edited: list[str], x: torch.Tensor) -> tuple[MemoSplit | None, str]:
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
            if outputs_close(logits, first, _TOLERANCE) and outputs_close(first, second, _TOLERANCE):
                split.unread = _unread_records(split, x, records, first)
                return split, ""
    except Exception as e:  # a module whose forward cannot be replaced (scripted, ...): not splittable
        return None, f"replaying recorded outputs failed: {type(e).__name__}: {e}"
    return None, "its code changes recorded outputs in a way replaying them cannot reproduce"


def _unread_records(split: MemoSplit, x: torch.Tensor, records: dict, expected: torch.Tensor) -> frozenset:
    """Keys of the records whose values never reach the logits: replaying with one of them
    poisoned (NaN) leaves the logits as they were. Kept only if replaying with all of them as
    placeholders still gives the logits (glue code that writes into one needs its memory)."""
    unread = set()
    for key, value in records.items():
        if not any(isinstance(v, torch.Tensor) and v.is_floating_point() for v in pytree.tree_leaves(value)):
            continue  # nothing to poison: keep it
        try:
            out = split.replay(x, {**records, key: _poisoned(value)})
        except Exception:  # the poisoned value broke the glue code: it is read
            continue
        if outputs_close(expected, out, _TOLERANCE):
            unread.add(key)
    if not unread:
        return frozenset()
    split.unread = frozenset(unread)
    try:
        out = split.replay(x, {k: _placeholder(v) if k in unread else v for k, v in records.items()})
        ok = outputs_close(expected, out, _TOLERANCE)
    except Exception:
        ok = False
    return frozenset(unread) if ok else frozenset()


def _text_chunks(model: nn.Module, x: torch.Tensor) -> tuple[list[torch.Tensor] | None, torch.Tensor | None]:
    """Packed texts (an "attention_mask" among the model's PACKED_INPUTS) as chunks of rows
    sorted by length, each cut after its last unpadded token, and the order that undoes the
    sort; (None, None) for any other input."""
    names = getattr(model, PACKED_INPUTS, None)
    if not names or "attention_mask" not in names or x.ndim != 3:
        return None, None
    mask = x[:, list(names).index("attention_mask")] != 0
    # The end of each row's last real token: cutting only after it keeps every position.
    ends = (mask * torch.arange(1, mask.shape[1] + 1, device=mask.device)).amax(1)
    order = torch.argsort(ends, stable=True)
    chunks = []
    for i in range(0, len(x), TEXT_CHUNK):
        rows = order[i : i + TEXT_CHUNK]
        chunks.append(x[rows][..., : max(int(ends[rows].max()), 1)])
    return chunks, torch.argsort(order)


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


def _cloned(out):
    return pytree.tree_map(lambda v: v.clone() if isinstance(v, torch.Tensor) else v, out)


def _placeholder(out):
    """`out`'s structure with each tensor replaced by zeros of its shape and dtype that take no
    memory (one element, expanded): what a stub answers for a record nothing reads."""
    return pytree.tree_map(lambda v: torch.zeros((), dtype=v.dtype, device=v.device).expand(v.shape)
                           if isinstance(v, torch.Tensor) else v, out)


def _poisoned(out):
    return pytree.tree_map(lambda v: torch.full_like(v, float("nan"))
                           if isinstance(v, torch.Tensor) and v.is_floating_point() else v, out)


def _nbytes(records: dict) -> int:
    """Bytes the records hold (their storages, each counted once)."""
    storages = {}
    for v in pytree.tree_leaves(list(records.values())):
        if isinstance(v, torch.Tensor):
            storage = v.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
    return sum(storages.values())
