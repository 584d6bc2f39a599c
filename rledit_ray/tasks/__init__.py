"""Editing tasks: reward samples, dense reward terms, reported metrics."""
from rledit_ray.tasks.bias import BiasTask
from rledit_ray.tasks.unlearning import UnlearningTask, true_class_margin

TASKS = ("unlearning", "bias")

__all__ = ["TASKS", "BiasTask", "UnlearningTask", "true_class_margin"]
