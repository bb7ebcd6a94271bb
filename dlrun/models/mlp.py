"""Feed-forward models: the perceptron and the multi-layer perceptron."""
from __future__ import annotations

import math
from typing import Sequence

from torch import nn

from dlrun.models.layers import activation as make_activation
from dlrun.models.layers import init_weights, norm_layer
from dlrun.registry import register_model


@register_model("perceptron")
def perceptron(input_shape: Sequence[int], num_outputs: int, init: str = "default") -> nn.Module:
    """A single dense layer on the flattened input (softmax / linear regression)."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_outputs))
    return init_weights(model, init)


@register_model("mlp")
def mlp(input_shape: Sequence[int], num_outputs: int, hidden: Sequence[int] = (256, 128),
        activation: str = "relu", dropout: float = 0.0, norm: str = "none", init: str = "default",
        leaky_slope: float = 0.01, maxout_k: int = 2) -> nn.Module:
    """Multi-layer perceptron: [dense -> norm -> activation -> dropout] per hidden layer."""
    layers: list[nn.Module] = [nn.Flatten()]
    width = math.prod(input_shape)
    pieces = maxout_k if activation == "maxout" else 1  # maxout: k linear pieces per unit
    for h in hidden:
        layers += [nn.Linear(width, int(h) * pieces), norm_layer(norm, int(h) * pieces, 1),
                   make_activation(activation, leaky_slope, maxout_k)]
        if dropout:
            layers.append(nn.Dropout(dropout))
        width = int(h)
    layers.append(nn.Linear(width, num_outputs))
    return init_weights(nn.Sequential(*layers), init)
