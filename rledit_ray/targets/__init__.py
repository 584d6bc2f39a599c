"""Target networks: architectures, training recipe, cached weights."""
from rledit_ray.targets.architectures import ARCHITECTURES, digits_cnn, mnist_cnn
from rledit_ray.targets.split import PACKED_INPUTS, Split, call_model, split_model
from rledit_ray.targets.train import accuracy, full_model_predict, full_model_scores, load_target

__all__ = [
    "ARCHITECTURES", "digits_cnn", "mnist_cnn",
    "PACKED_INPUTS", "Split", "call_model", "split_model",
    "accuracy", "full_model_predict", "full_model_scores", "load_target",
]
