"""The names of the built-in tasks and datasets, once: config validation, the data loaders
and the Python API all read them from here."""

TASKS = ("unlearning", "bias")
DATASETS_OF_TASK = {"unlearning": ("mnist", "digits"), "bias": ("redditbias", "jigsaw")}
DATASETS = tuple(name for names in DATASETS_OF_TASK.values() for name in names)
IMAGE_DATASETS = DATASETS_OF_TASK["unlearning"]
