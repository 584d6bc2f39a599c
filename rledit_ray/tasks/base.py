"""What an editing task is: the protocol every task implements (unlearning, bias, yours).

A world calls only the reward half (`reward_x`, `reward_terms`, `to`, `observed_terms`); the
training loop and the report call the rest. Adding a task means a class with these members
and one builder in rledit_ray/build.py (`TASK_BUILDERS`).
"""
from __future__ import annotations

from typing import Callable, Protocol

import torch


class Task(Protocol):
    name: str
    observed_terms: tuple[str, ...]   # reward terms put into the world's observation
    metric_input: str                 # "labels" (metrics get predict) or "scores" (p(label 1))
    reward_x: torch.Tensor            # the reward samples, one batch, as the model takes them
    report_rows: list[tuple[str, str]]
    report_note: str
    curve_keys: list[tuple[str, str]]

    def to(self, device) -> "Task": ...

    def reward_terms(self, logits: torch.Tensor, reference_logits: torch.Tensor) -> dict[str, float]:
        """Dense terms in ~[0, 1] (higher is better), at least "utility" and "objective"."""

    def for_rollouts(self) -> "Task":
        """This task without its evaluation pools: what an EnvRunner needs, shipped to it."""

    def metrics(self, measure: Callable, pools=("fit", "validation", "test")) -> dict: ...

    def selection_score(self, metrics: dict) -> float:
        """Scale-free score for choosing checkpoints on validation (higher is better)."""

    def summary(self, metrics: dict) -> str: ...

    def progress(self, row: dict) -> str: ...

    def met_stop(self, row: dict, training) -> bool: ...

    def report_sections(self, metrics: dict) -> list[str]: ...
