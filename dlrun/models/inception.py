"""A small GoogLeNet-style net (Szegedy et al. 2014): a conv stem, inception blocks, global pooling."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from dlrun.errors import DlrunError
from dlrun.models.layers import activation as make_activation
from dlrun.models.layers import init_weights, norm_layer
from dlrun.registry import register_model


def conv_unit(in_ch: int, out_ch: int, kernel: int, norm: str, activation: str) -> nn.Sequential:
    """conv (size-preserving) -> norm -> activation."""
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2, bias=norm == "none"),
                         norm_layer(norm, out_ch, 2), make_activation(activation))


class InceptionBlock(nn.Module):
    """Four parallel branches concatenated along the channels: 1x1; 1x1 -> 3x3; 1x1 -> 5x5; 3x3 max pool -> 1x1.

    (c1, c3r, c3, c5r, c5, pool_proj) as in the GoogLeNet paper's table 1: the 1x1 'reductions'
    c3r and c5r shrink the channels before the expensive 3x3 and 5x5 convolutions."""

    def __init__(self, in_ch: int, c1: int, c3r: int, c3: int, c5r: int, c5: int, pool_proj: int, norm: str,
                 activation: str):
        super().__init__()
        self.b1 = conv_unit(in_ch, c1, 1, norm, activation)
        self.b3 = nn.Sequential(conv_unit(in_ch, c3r, 1, norm, activation), conv_unit(c3r, c3, 3, norm, activation))
        self.b5 = nn.Sequential(conv_unit(in_ch, c5r, 1, norm, activation), conv_unit(c5r, c5, 5, norm, activation))
        self.bp = nn.Sequential(nn.MaxPool2d(3, 1, 1), conv_unit(in_ch, pool_proj, 1, norm, activation))
        self.out_channels = c1 + c3 + c5 + pool_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b1(x), self.b3(x), self.b5(x), self.bp(x)], dim=1)


DEFAULT_BLOCKS = [[16, 24, 32, 4, 8, 8], [32, 32, 48, 8, 24, 24], "pool",
                  [48, 24, 52, 4, 12, 16], [64, 32, 64, 8, 24, 24], "pool", [96, 48, 96, 12, 32, 32]]


@register_model("inception")
def inception(input_shape: Sequence[int], num_outputs: int, stem: int = 32, blocks: Sequence = tuple(DEFAULT_BLOCKS),
              norm: str = "batch", activation: str = "relu", dropout: float = 0.2, init: str = "default") -> nn.Module:
    """Small inception net: stem conv, blocks of parallel 1x1/3x3/5x5/pool branches with 1x1 reductions, global pool."""
    if len(input_shape) != 3:
        raise DlrunError(f"inception needs image inputs (channels, height, width), got shape {tuple(input_shape)}")
    _, h, w = input_shape
    layers: list[nn.Module] = [conv_unit(input_shape[0], int(stem), 3, norm, activation)]
    ch = int(stem)
    for i, block in enumerate(blocks):
        if block == "pool":
            if min(h, w) >= 2:
                layers.append(nn.MaxPool2d(3, 2, 1))
                h, w = (h + 1) // 2, (w + 1) // 2
            continue
        if not isinstance(block, (list, tuple)) or len(block) != 6:
            raise DlrunError(f"model.blocks[{i}]={block!r}: each block is 'pool' or six channel counts "
                             "[c1x1, c3x3_reduce, c3x3, c5x5_reduce, c5x5, pool_proj]")
        layers.append(InceptionBlock(ch, *map(int, block), norm=norm, activation=activation))
        ch = layers[-1].out_channels
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    if dropout:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(ch, num_outputs))
    model = init_weights(nn.Sequential(*layers), init)
    with torch.no_grad():
        model.eval()(torch.zeros(1, *input_shape))
    return model.train()
