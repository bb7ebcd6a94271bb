"""Convolutional models. `cnn` is LeNet-style: [conv -> activation -> pool] per block, then dense."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from dlrun.errors import DlrunError
from dlrun.models.layers import activation as make_activation
from dlrun.models.layers import init_weights, norm_layer
from dlrun.registry import register_model


@register_model("cnn")
def cnn(input_shape: Sequence[int], num_outputs: int, channels: Sequence[int] = (6, 16), kernel: int = 5,
        hidden: Sequence[int] = (120, 84), activation: str = "relu", pool: str = "max", norm: str = "none",
        dropout: float = 0.0, init: str = "default") -> nn.Module:
    """LeNet-style CNN: [conv -> norm -> activation -> pool] per channel entry, then a dense head."""
    if len(input_shape) != 3:
        raise DlrunError(f"cnn needs image inputs (channels, height, width), got shape {tuple(input_shape)}; "
                         "use model=mlp for flat features.")
    in_ch, h, w = input_shape
    pool_cls = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}[pool]
    layers: list[nn.Module] = []
    for ch in channels:
        # 'same' padding keeps small inputs (8x8 digits) alive through every block; pool while > 1 pixel.
        layers += [nn.Conv2d(in_ch, int(ch), kernel, padding=kernel // 2), norm_layer(norm, int(ch), 2),
                   make_activation(activation)]
        if min(h, w) >= 2:
            layers.append(pool_cls(2))
            h, w = h // 2, w // 2
        in_ch = int(ch)
    layers.append(nn.Flatten())
    width = in_ch * h * w
    for units in hidden:
        layers += [nn.Linear(width, int(units)), make_activation(activation)]
        if dropout:
            layers.append(nn.Dropout(dropout))
        width = int(units)
    layers.append(nn.Linear(width, num_outputs))
    model = nn.Sequential(*layers)
    with torch.no_grad():  # fail here, with the shapes, rather than in the first training step
        model(torch.zeros(1, *input_shape))
    return init_weights(model, init)
