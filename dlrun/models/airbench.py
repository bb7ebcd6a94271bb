"""A small fast CIFAR net after Keller Jordan's airbench94 (Jordan 2024, "94% on CIFAR-10 in 3.29 Seconds
on a Single GPU", arXiv:2404.00498): a 2x2 stem conv, three [conv -> pool -> BN -> GELU -> conv -> BN -> GELU]
blocks (64, 256, 256 channels), a global max pool and a bias-free linear head scaled by 1/9.

Left out here (see conf/experiment/airbench_cifar10.yaml): the frozen patch-whitening initialisation of the
stem, dirac (identity) initialisation of the convs, BatchNorm with frozen scale, lookahead and TTA.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from dlrun.errors import DlrunError
from dlrun.models.layers import activation as make_activation
from dlrun.models.layers import init_weights
from dlrun.registry import register_model


class Scale(nn.Module):
    """Multiplies by a constant (airbench's output scaling: small logits early in training)."""

    def __init__(self, factor: float):
        super().__init__()
        self.factor = float(factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor

    def extra_repr(self) -> str:
        return f"factor={self.factor:g}"


def _block(in_ch: int, out_ch: int, pool: bool, activation: str, bn_momentum: float) -> nn.Sequential:
    """conv3x3 -> maxpool 2 (when `pool`) -> BN -> act -> conv3x3 -> BN -> act; convs without bias (BN follows)."""
    layers = [nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False)]
    if pool:
        layers.append(nn.MaxPool2d(2))
    layers += [nn.BatchNorm2d(out_ch, momentum=bn_momentum), make_activation(activation),
               nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False),
               nn.BatchNorm2d(out_ch, momentum=bn_momentum), make_activation(activation)]
    return nn.Sequential(*layers)


@register_model("airbench")
def airbench(input_shape: Sequence[int], num_outputs: int, widths: Sequence[int] = (64, 256, 256),
             stem_width: int | None = None, stem_norm: bool = True, head_scale: float = 1 / 9,
             activation: str = "gelu", bn_momentum: float = 0.4, init: str = "default") -> nn.Module:
    """airbench94-style fast net: 2x2 stem, [conv-pool-BN-GELU-conv-BN-GELU] blocks, global max pool, scaled head."""
    if len(input_shape) != 3:
        raise DlrunError(f"airbench needs image inputs (channels, height, width), got shape {tuple(input_shape)}; "
                         "use model=mlp for flat features.")
    in_ch, h, w = (int(v) for v in input_shape)
    if min(h, w) < 2:
        raise DlrunError(f"airbench's 2x2 stem needs images of at least 2x2 pixels, got {tuple(input_shape)}")
    stem_ch = int(stem_width or 2 * in_ch * 4)  # airbench: 2 x (C*2*2) whitening filters, 24 for RGB
    layers: list[nn.Module] = [nn.Conv2d(in_ch, stem_ch, 2, padding=0)]
    if stem_norm:  # stands in for the whitening init (airbench's own baseline without it has BN here)
        layers.append(nn.BatchNorm2d(stem_ch, momentum=bn_momentum))
    layers.append(make_activation(activation))
    h, w, ch = h - 1, w - 1, stem_ch
    for width in widths:
        pool = min(h, w) >= 2  # pool while the map stays at least 1 px (8x8 digits: 7 -> 3 -> 1 -> 1)
        layers.append(_block(ch, int(width), pool, activation, bn_momentum))
        ch = int(width)
        if pool:
            h, w = h // 2, w // 2
    layers += [nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(ch, num_outputs, bias=False), Scale(head_scale)]
    model = init_weights(nn.Sequential(*layers), init)
    with torch.no_grad():  # fail here, with the shapes, rather than in the first training step
        model.eval()(torch.zeros(1, *input_shape))
    return model.train()
