"""Datasets and splits. Nothing here knows about models, worlds or Ray."""
from rledit_ray.data.images import (
    DATASETS,
    DEFAULT_NORMALISATION,
    IMAGE_SOURCES,
    ImageDataset,
    default_normalisation,
    load_dataset,
    load_images,
    preprocess_images,
    read_idx,
)
from rledit_ray.data.splits import LabeledSet, Pools, UnlearningSplits, pools, unlearning_splits

__all__ = [
    "DATASETS", "DEFAULT_NORMALISATION", "IMAGE_SOURCES", "ImageDataset", "default_normalisation",
    "load_dataset", "load_images", "preprocess_images", "read_idx",
    "LabeledSet", "Pools", "UnlearningSplits", "pools", "unlearning_splits",
]
