"""Editing tasks: reward samples, dense reward terms, reported metrics."""
from rledit_ray.tasks.bias import BiasTask
from rledit_ray.tasks.unlearning import UnlearningTask, true_class_margin

__all__ = ["BiasTask", "UnlearningTask", "true_class_margin"]
