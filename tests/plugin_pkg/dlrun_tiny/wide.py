"""A second plugin model, in a submodule."""
import math

from torch import nn


def widenet(input_shape, num_outputs, width: int = 256):
    """Wide plugin net: one hidden layer of `width` ReLU units."""
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), width), nn.ReLU(),
                         nn.Linear(width, num_outputs))
