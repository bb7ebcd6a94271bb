"""Convolutional models. `cnn` is configurable: [conv -> norm -> activation (x convs) -> pool] per block, then dense."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from dlrun.errors import DlrunError
from dlrun.models.layers import activation as make_activation
from dlrun.models.layers import init_weights, norm_layer
from dlrun.registry import register_model


def _per_block(value, n: int, key: str) -> list:
    """An int (or 'same'/'valid') for every block, or a list with one entry per block."""
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise DlrunError(f"model.{key} has {len(value)} entries but there are {n} conv blocks (model.channels)")
        return list(value)
    return [value] * n


def _pad(padding, kernel: int) -> int:
    if padding == "same":
        return kernel // 2
    if padding == "valid":
        return 0
    if isinstance(padding, int) and not isinstance(padding, bool) and padding >= 0:
        return padding
    raise DlrunError(f"model.padding={padding!r} is not allowed: same, valid or an integer >= 0")


@register_model("cnn")
def cnn(input_shape: Sequence[int], num_outputs: int, channels: Sequence[int] = (6, 16), kernel=5, stride=1,
        padding="same", convs: int = 1, hidden: Sequence[int] = (120, 84), activation: str = "relu",
        pool: str = "max", pool_size: int = 2, norm: str = "none", global_pool: str = "none",
        dropout: float = 0.0, init: str = "default") -> nn.Module:
    """Configurable CNN: [(conv -> norm -> activation) x convs -> pool] per channel entry, then a dense head."""
    if len(input_shape) != 3:
        raise DlrunError(f"cnn needs image inputs (channels, height, width), got shape {tuple(input_shape)}; "
                         "use model=mlp for flat features.")
    if pool not in ("max", "avg", "none") or global_pool not in ("none", "avg", "max"):
        raise DlrunError(f"model.pool={pool!r} / model.global_pool={global_pool!r}: pool is max|avg|none, "
                         "global_pool is none|avg|max")
    in_ch, h, w = input_shape
    n = len(channels)
    kernels, strides, paddings = (_per_block(kernel, n, "kernel"), _per_block(stride, n, "stride"),
                                  _per_block(padding, n, "padding"))
    pool_cls = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}.get(pool)
    layers: list[nn.Module] = []
    for b, ch in enumerate(channels):
        k, s, ch = int(kernels[b]), int(strides[b]), int(ch)
        for c in range(int(convs)):  # the block's first conv has the stride, the others keep the size
            p = _pad(paddings[b], k)
            st = s if c == 0 else 1
            h, w = (h + 2 * p - k) // st + 1, (w + 2 * p - k) // st + 1
            if min(h, w) < 1:
                raise DlrunError(f"cnn block {b + 1}, conv {c + 1} (kernel {k}, stride {st}, padding {p}) "
                                 f"shrinks the {tuple(input_shape)} input to nothing; use padding=same, a smaller "
                                 "kernel or fewer blocks")
            # 'same' padding keeps small inputs (8x8 digits) alive through every block.
            layers += [nn.Conv2d(in_ch, ch, k, st, p), norm_layer(norm, ch, 2), make_activation(activation)]
            in_ch = ch
        if pool_cls is not None and min(h, w) >= pool_size:  # pool while the map is big enough
            layers.append(pool_cls(pool_size))
            h, w = h // pool_size, w // pool_size
    if global_pool != "none":
        layers.append(nn.AdaptiveAvgPool2d(1) if global_pool == "avg" else nn.AdaptiveMaxPool2d(1))
        h = w = 1
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
