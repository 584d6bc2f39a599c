"""The CNNs this project trains as editing targets.

They are `nn.Sequential` with named stages on purpose: a world can then split the network
at the first edited layer, cache the frozen prefix's activations once and run only the
suffix per step. Any other `nn.Module` works as a target too, split less directly
(targets/split.py).
"""
from collections import OrderedDict

from torch import nn


def mnist_cnn(num_classes: int = 10, channels: int = 1, size: tuple[int, int] = (28, 28)) -> nn.Sequential:
    """conv16-conv32-fc128: ~99% on MNIST after 5 epochs (~40 s on 2 cores), ~4x cheaper than conv32-conv64.
    Other image sizes and channel counts (a user's dataset) get the same stages."""
    return nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(channels, 16, 3, padding=1), relu1=nn.ReLU(), pool1=nn.MaxPool2d(2),
        conv2=nn.Conv2d(16, 32, 3, padding=1), relu2=nn.ReLU(), pool2=nn.MaxPool2d(2),
        flatten=nn.Flatten(),
        fc1=nn.Linear(32 * (size[0] // 4) * (size[1] // 4), 128), relu3=nn.ReLU(),
        fc2=nn.Linear(128, num_classes),
    ))


def digits_cnn(num_classes: int = 10) -> nn.Sequential:
    """For scikit-learn's 8x8 digits; trains in seconds."""
    return nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(1, 16, 3, padding=1), relu1=nn.ReLU(), pool1=nn.MaxPool2d(2),
        flatten=nn.Flatten(),
        fc1=nn.Linear(16 * 4 * 4, 64), relu2=nn.ReLU(),
        fc2=nn.Linear(64, num_classes),
    ))


ARCHITECTURES = {"mnist": mnist_cnn, "digits": digits_cnn}


def builtin_cnn(name: str, num_classes: int, image_shape: tuple[int, ...]) -> tuple[str, nn.Sequential]:
    """(architecture name, fresh network) of the project's CNN for a dataset: the digits CNN for
    sklearn's 8x8 digits, else the MNIST CNN sized to the images."""
    if name == "digits":
        return "digits_cnn", digits_cnn(num_classes)
    channels, height, width = image_shape
    if min(height, width) < 4:
        raise ValueError(f"images of {height}x{width} pixels are too small for the project's CNN (>= 4x4)")
    return "mnist_cnn", mnist_cnn(num_classes, channels, (height, width))
