"""Datasets and splits. Nothing here knows about models, worlds or Ray."""
from rledit_ray.data.images import DATASETS, ImageDataset, load_dataset, read_idx
from rledit_ray.data.splits import LabeledSet, Pools, UnlearningSplits, pools, unlearning_splits

__all__ = [
    "DATASETS", "ImageDataset", "load_dataset", "read_idx",
    "LabeledSet", "Pools", "UnlearningSplits", "pools", "unlearning_splits",
]
