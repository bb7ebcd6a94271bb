"""YOLO v1 (Redmon et al. 2016, "You Only Look Once"): one convolutional pass from an image to an S x S grid of
box predictions, for task=detection (dlrun/tasks/detection.py holds the loss and the decoding).

The output, (batch, S, S, B*5 + C), is the paper's S x S x (B*5 + C) tensor; per cell (row, col):
    out[..., b*5 + 0:2]  x, y: box b's centre within the cell, 0..1 of the cell (0,0 its top-left corner)
    out[..., b*5 + 2:4]  sqrt(w), sqrt(h): the square roots of its width and height, as fractions of the image
                         (the paper predicts square roots, so that an error weighs more in a small box)
    out[..., b*5 + 4]    its confidence, Pr(object) * IoU(predicted, true)
    out[..., B*5 + c]    Pr(class c | object), one set per cell, shared by its B boxes
A sigmoid bounds every value to 0..1 (the paper's last layer is linear; bounded values keep the boxes inside the
image and the square roots meaningful, and train steadily from scratch on small data).

The backbone is the paper's kind scaled down: conv 3x3 -> batch norm -> LeakyReLU(0.1) blocks, each stage
halving the size with a stride-2 conv and doubling the channels, until the map is S x S; then a 1x1 conv per
cell instead of the paper's two dense layers (fewer weights, trains in minutes on a CPU).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from dlrun.errors import DlrunError
from dlrun.models.base import Model
from dlrun.registry import register_model


def conv_block(c_in: int, c_out: int, stride: int = 1, kernel: int = 3) -> nn.Sequential:
    """conv -> batch norm -> LeakyReLU(0.1), as in YOLO's Darknet backbone (no bias: the norm has one)."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(c_out),
                         nn.LeakyReLU(0.1))


@register_model("yolov1")
class YoloV1(Model):
    """YOLO v1 detector: conv+BN+LeakyReLU backbone down to an S x S grid of B boxes and C class probabilities"""

    output = "grid"  # per input an S x S grid of boxes and class probabilities: task=detection reads it

    def __init__(self, input_shape: Sequence[int], num_outputs: int, grid: int = 8, boxes: int = 2, width: int = 16,
                 depth: int = 1, max_width: int = 256):
        super().__init__()
        if len(input_shape) != 3:
            raise DlrunError(f"model=yolov1 detects objects in images (channels, height, width); this dataset gives "
                             f"inputs of shape {tuple(input_shape)}.")
        channels, height, wide = (int(v) for v in input_shape)
        if grid < 1 or boxes < 1 or width < 1 or depth < 0:
            raise DlrunError(f"model.grid={grid}, model.boxes={boxes}, model.width={width}, model.depth={depth}: "
                             "give grid, boxes and width >= 1 and depth >= 0.")
        if min(height, wide) < grid:
            raise DlrunError(f"model.grid={grid} is finer than the {height}x{wide} images; give a grid of at most "
                             f"{min(height, wide)} cells a side.")
        self.grid, self.boxes, self.classes = int(grid), int(boxes), int(num_outputs)
        layers, c = [conv_block(channels, width)], width
        while min(height, wide) // 2 >= grid:  # one stage per halving: stride-2 block, then `depth` blocks
            c_next = min(c * 2, max_width)
            layers += [conv_block(c, c_next, stride=2), *(conv_block(c_next, c_next) for _ in range(depth))]
            c, height, wide = c_next, (height + 1) // 2, (wide + 1) // 2
        if (height, wide) != (grid, grid):  # sizes that do not halve down to the grid exactly (96x96 to 8x8)
            layers.append(nn.AdaptiveAvgPool2d(grid))
        layers.append(conv_block(c, c))
        self.backbone = nn.Sequential(*layers)
        self.head = nn.Conv2d(c, self.boxes * 5 + self.classes, 1)
        with torch.no_grad():  # start from the priors: few objects (confidence 0.01), classes equally likely
            bias = self.head.bias.view(-1)
            bias.zero_()
            bias[4:self.boxes * 5:5] = math.log(0.01 / 0.99)
            bias[self.boxes * 5:] = -math.log(max(self.classes - 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, channels, H, W) normalised images -> (batch, S, S, B*5 + C), every value in 0..1."""
        return torch.sigmoid(self.head(self.backbone(x))).permute(0, 2, 3, 1)
