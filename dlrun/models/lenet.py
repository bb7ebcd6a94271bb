"""LeNet-5 (LeCun et al. 1998): two 5x5 convolutions with subsampling, then 120-84-classes dense layers."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from dlrun.errors import DlrunError
from dlrun.models.layers import activation as make_activation
from dlrun.models.layers import init_weights, norm_layer
from dlrun.registry import register_model


@register_model("lenet5")
def lenet5(input_shape: Sequence[int], num_outputs: int, activation: str = "relu", pool: str = "max",
           norm: str = "none", dropout: float = 0.0, init: str = "default") -> nn.Module:
    """LeNet-5: conv5x5(6) -> pool -> conv5x5(16) -> pool -> 120 -> 84 -> classes (61,706 params on 28x28)."""
    if len(input_shape) != 3:
        raise DlrunError(f"lenet5 needs image inputs (channels, height, width), got shape {tuple(input_shape)}")
    if pool not in ("max", "avg"):
        raise DlrunError(f"model.pool={pool!r} is not allowed: max | avg")
    in_ch, h, w = input_shape
    pool_cls = nn.MaxPool2d if pool == "max" else nn.AvgPool2d
    # The 1998 net took 32x32 inputs (28x28 digits padded by 2): pad C1 by 2 below 32 px, as for MNIST.
    p1 = 2 if min(h, w) < 32 else 0
    h, w = h + 2 * p1 - 4, w + 2 * p1 - 4
    layers: list[nn.Module] = [nn.Conv2d(in_ch, 6, 5, padding=p1), norm_layer(norm, 6, 2), make_activation(activation)]
    if min(h, w) >= 2:
        layers.append(pool_cls(2))
        h, w = h // 2, w // 2
    p2 = 0 if min(h, w) >= 6 else 2  # small inputs (8x8 digits): keep C3 'same' so the map survives
    h, w = h + 2 * p2 - 4, w + 2 * p2 - 4
    layers += [nn.Conv2d(6, 16, 5, padding=p2), norm_layer(norm, 16, 2), make_activation(activation)]
    if min(h, w) >= 2:
        layers.append(pool_cls(2))
        h, w = h // 2, w // 2
    layers.append(nn.Flatten())
    width = 16 * h * w
    for units in (120, 84):
        layers += [nn.Linear(width, units), make_activation(activation)]
        if dropout:
            layers.append(nn.Dropout(dropout))
        width = units
    layers.append(nn.Linear(width, num_outputs))
    model = nn.Sequential(*layers)
    with torch.no_grad():
        model(torch.zeros(1, *input_shape))
    return init_weights(model, init)
