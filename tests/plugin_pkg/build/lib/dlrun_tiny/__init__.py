"""A third-party model: dlrun finds it through the `dlrun.models` entry point."""
import math

from torch import nn


def tiny(input_shape, num_outputs, width: int = 32):
    """Tiny plugin net: one hidden layer of `width` tanh units."""
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), width), nn.Tanh(),
                         nn.Linear(width, num_outputs))
