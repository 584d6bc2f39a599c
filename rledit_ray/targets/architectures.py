"""The CNNs this project trains as editing targets.

They are `nn.Sequential` with named stages on purpose: a world can then split the network
at the first edited layer, cache the frozen prefix's activations once and run only the
suffix per step. Any other `nn.Module` works as a target too, split less directly
(targets/split.py).
"""
from collections import OrderedDict

from torch import nn


def mnist_cnn(num_classes: int = 10) -> nn.Sequential:
    """conv16-conv32-fc128: ~99% on MNIST after 5 epochs (~40 s on 2 cores), ~4x cheaper than conv32-conv64."""
    return nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(1, 16, 3, padding=1), relu1=nn.ReLU(), pool1=nn.MaxPool2d(2),
        conv2=nn.Conv2d(16, 32, 3, padding=1), relu2=nn.ReLU(), pool2=nn.MaxPool2d(2),
        flatten=nn.Flatten(),
        fc1=nn.Linear(32 * 7 * 7, 128), relu3=nn.ReLU(),
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
