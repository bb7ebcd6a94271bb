"""VGG (Simonyan & Zisserman 2014): blocks of 3x3 convolutions, each block ending in 2x2 max pooling."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from dlrun.errors import DlrunError, did_you_mean
from dlrun.models.layers import activation as make_activation
from dlrun.models.layers import init_weights, norm_layer
from dlrun.registry import register_model

# Channels of each 3x3 conv, one list per block (a 2x2 max pool follows every block).
VGG_BLOCKS = {
    "small": [[32, 32], [64, 64], [128, 128]],  # for 28-32 px images: three pools, 28 -> 3 (32 -> 4)
    "vgg11": [[64], [128], [256, 256], [512, 512], [512, 512]],
    "vgg13": [[64, 64], [128, 128], [256, 256], [512, 512], [512, 512]],
    "vgg16": [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]],
    "vgg19": [[64, 64], [128, 128], [256] * 4, [512] * 4, [512] * 4],
}


@register_model("vgg")
def vgg(input_shape: Sequence[int], num_outputs: int, blocks="small", norm: str = "batch",
        activation: str = "relu", hidden: Sequence[int] = (256,), dropout: float = 0.5,
        global_pool: str = "none", init: str = "default") -> nn.Module:
    """VGG-style net: blocks of 3x3 convs then 2x2 max pool, dense head; blocks=small|vgg11|vgg13|vgg16|vgg19|[[c,..],..]."""
    if len(input_shape) != 3:
        raise DlrunError(f"vgg needs image inputs (channels, height, width), got shape {tuple(input_shape)}")
    if isinstance(blocks, str):
        if blocks not in VGG_BLOCKS:
            raise DlrunError(f"unknown VGG variant model.blocks={blocks!r}.{did_you_mean(blocks, VGG_BLOCKS)} "
                             f"Choose one of {', '.join(VGG_BLOCKS)}, or a list of channel lists like [[32,32],[64,64]].")
        blocks = VGG_BLOCKS[blocks]
    in_ch, h, w = input_shape
    layers: list[nn.Module] = []
    for block in blocks:
        for ch in (block if isinstance(block, (list, tuple)) else [block]):
            layers += [nn.Conv2d(in_ch, int(ch), 3, padding=1), norm_layer(norm, int(ch), 2),
                       make_activation(activation)]
            in_ch = int(ch)
        if min(h, w) >= 2:  # small inputs: stop pooling at 1x1 (vgg16 on 32 px ends at 1x1 like on 224 px at 7x7)
            layers.append(nn.MaxPool2d(2))
            h, w = h // 2, w // 2
    if global_pool == "avg":
        layers.append(nn.AdaptiveAvgPool2d(1))
        h = w = 1
    elif global_pool != "none":
        raise DlrunError(f"model.global_pool={global_pool!r} is not allowed: none | avg")
    layers.append(nn.Flatten())
    width = in_ch * h * w
    for units in hidden:
        layers += [nn.Linear(width, int(units)), make_activation(activation)]
        if dropout:
            layers.append(nn.Dropout(dropout))
        width = int(units)
    layers.append(nn.Linear(width, num_outputs))
    model = nn.Sequential(*layers)
    with torch.no_grad():
        model.eval()(torch.zeros(1, *input_shape))
    return init_weights(model.train(), init)
