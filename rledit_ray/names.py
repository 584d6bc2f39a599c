"""The names of the built-in tasks and datasets, once: config validation, the data loaders
and the Python API all read them from here."""

TASKS = ("unlearning", "bias")
DATASETS_OF_TASK = {"unlearning": ("mnist", "digits"), "bias": ("redditbias", "jigsaw")}
DATASETS = tuple(name for names in DATASETS_OF_TASK.values() for name in names)
IMAGE_DATASETS = DATASETS_OF_TASK["unlearning"]

# The gymnasium ids of the two worlds, registered by entry-point string when the package is
# imported (making one builds its world from a run config through rledit_ray.build).
WORLD_IDS = {"mask": "rledit/MaskWorld-v0", "shift": "rledit/ShiftWorld-v0"}
WORLD_ENTRY_POINTS = {"mask": "rledit_ray.build:make_mask_world", "shift": "rledit_ray.build:make_shift_world"}
