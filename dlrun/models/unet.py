"""U-Net (Ronneberger, Fischer & Brox 2015): an encoder that halves the image `depth` times while doubling its
channels, a decoder that doubles it back, each decoder level joined with the encoder level of its size (the skip
connections), and a 1x1 convolution to one score per class per pixel: output (N, classes, H, W).

Each level is two [3x3 conv -> batch norm -> ReLU]; upsampling is a 2x2 transposed convolution (learned) or
bilinear followed by a 1x1 convolution. Sizes that do not halve evenly are padded back to the skip's size.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from dlrun.errors import DlrunError
from dlrun.models.base import Model
from dlrun.registry import register_model

UPSAMPLE = ("transpose", "bilinear")


def double_conv(cin: int, cout: int, dropout: float) -> nn.Sequential:
    """[3x3 conv -> batch norm -> ReLU] twice (no conv bias: the norm has one)."""
    layers = [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
              nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers, *([nn.Dropout2d(dropout)] if dropout else []))


def upsampler(kind: str, cin: int, cout: int) -> nn.Module:
    """Twice the size, `cin` to `cout` channels."""
    if kind == "transpose":
        return nn.ConvTranspose2d(cin, cout, 2, stride=2)
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False), nn.Conv2d(cin, cout, 1))


@register_model("unet")
class UNet(Model):
    """U-Net: encoder-decoder with skip connections, a class score per pixel (task=segmentation)"""

    output = "pixels"

    def __init__(self, input_shape: Sequence[int], num_outputs: int, depth: int = 3, width: int = 16,
                 upsample: str = "transpose", dropout: float = 0.0):
        super().__init__()
        if len(input_shape) != 3:
            raise DlrunError(f"model=unet needs images (channels, height, width), got inputs of shape "
                             f"{tuple(input_shape)}.")
        if upsample not in UPSAMPLE:
            raise DlrunError(f"model.upsample={upsample!r}: choose {' or '.join(UPSAMPLE)}.")
        if depth < 1 or width < 1 or min(input_shape[1:]) < 2 ** depth:
            raise DlrunError(f"model.depth={depth}, model.width={width}: both at least 1, and {2 ** depth} (2^depth) "
                             f"at most the image's side ({min(input_shape[1:])}).")
        widths = [width * 2 ** level for level in range(depth + 1)]
        self.down = nn.ModuleList([double_conv(input_shape[0], widths[0], 0.0)]
                                  + [double_conv(a, b, dropout) for a, b in zip(widths, widths[1:])])
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList([upsampler(upsample, b, a) for a, b in zip(widths, widths[1:])][::-1])
        self.merge = nn.ModuleList([double_conv(2 * a, a, 0.0) for a in widths[:-1]][::-1])
        self.head = nn.Conv2d(widths[0], num_outputs, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(self.pool(x) if i else x)
            skips.append(x)
        x = skips.pop()
        for up, merge in zip(self.up, self.merge):
            skip = skips.pop()
            x = up(x)
            dh, dw = skip.shape[-2] - x.shape[-2], skip.shape[-1] - x.shape[-1]
            if dh or dw:  # an odd size halved rounds down: pad back to the skip's size
                x = nn.functional.pad(x, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2))
            x = merge(torch.cat([skip, x], dim=1))
        return self.head(x)
