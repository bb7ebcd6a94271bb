"""ResNet for small images (He et al. 2015, section 4.2): 3 stages of basic residual blocks, depth = 6n + 2."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from dlrun.errors import DlrunError
from dlrun.models.layers import activation as make_activation
from dlrun.models.layers import init_weights, norm_layer
from dlrun.registry import register_model


class BasicBlock(nn.Module):
    """conv3x3 -> norm -> act -> conv3x3 -> norm, plus the shortcut, then act.

    The shortcut is the identity, or a 1x1 convolution with norm (a projection, option B of the
    paper) when the block changes the number of channels or the resolution."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, norm: str, activation: str):
        super().__init__()
        bias = norm == "none"
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=bias)
        self.norm1 = norm_layer(norm, out_ch, 2)
        self.act1 = make_activation(activation)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=bias)
        self.norm2 = norm_layer(norm, out_ch, 2)
        self.shortcut = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=bias), norm_layer(norm, out_ch, 2))
        self.act2 = make_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.norm2(self.conv2(self.act1(self.norm1(self.conv1(x)))))
        return self.act2(out + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self, in_ch: int, num_outputs: int, blocks_per_stage: int, widths: Sequence[int], norm: str,
                 activation: str):
        super().__init__()
        bias = norm == "none"
        self.stem = nn.Sequential(nn.Conv2d(in_ch, int(widths[0]), 3, 1, 1, bias=bias),
                                  norm_layer(norm, int(widths[0]), 2), make_activation(activation))
        stages, ch = [], int(widths[0])
        for i, width in enumerate(widths):
            blocks = []
            for b in range(blocks_per_stage):
                stride = 2 if i > 0 and b == 0 else 1
                blocks.append(BasicBlock(ch, int(width), stride, norm, activation))
                ch = int(width)
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(ch, num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flatten(self.pool(self.stages(self.stem(x)))))


@register_model("resnet")
def resnet(input_shape: Sequence[int], num_outputs: int, depth: int = 20, widths: Sequence[int] = (16, 32, 64),
           norm: str = "batch", activation: str = "relu", init: str = "he") -> nn.Module:
    """CIFAR-style ResNet of basic blocks: depth 20, 32, 44, 56, 110 (6n+2), projection shortcuts."""
    if len(input_shape) != 3:
        raise DlrunError(f"resnet needs image inputs (channels, height, width), got shape {tuple(input_shape)}")
    layers_per_stage = (int(depth) - 2) / (2 * len(widths))
    if depth < 2 + 2 * len(widths) or layers_per_stage != int(layers_per_stage):
        ok = ", ".join(str(2 + 2 * len(widths) * n) for n in (1, 3, 5, 7, 9))
        raise DlrunError(f"model.depth={depth} is not a CIFAR ResNet depth: with {len(widths)} stages of basic "
                         f"blocks it must be {2 * len(widths)}n+2 ({ok}, ...)")
    model = ResNet(input_shape[0], num_outputs, int(layers_per_stage), widths, norm, activation)
    init_weights(model, init)
    for m in model.modules():  # norm layers start as the identity: scale 1, shift 0
        if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    with torch.no_grad():
        model.eval()(torch.zeros(1, *input_shape))
    return model.train()
