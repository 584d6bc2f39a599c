"""Editing tasks: reward samples, dense reward terms, reported metrics."""
from rledit_ray.tasks.unlearning import UnlearningTask, true_class_margin

TASKS = ("unlearning",)

__all__ = ["TASKS", "UnlearningTask", "true_class_margin"]
