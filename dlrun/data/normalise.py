"""Raw inputs, as the data source gives them (uint8 pixels, features, token ids), to what a model takes.

One module does it for training (per batch), for `dlrun predict` and inside every exported graph, so the
preprocessing of a served or exported model can never drift from the training one (no training-serving skew).
"""
from __future__ import annotations

import torch
from torch import nn


class Normalise(nn.Module):
    """x / scale, then standardised per channel (dim 1) with the training split's mean and std (of x / scale);
    token ids (text) pass as they are. The buffers hold mean and std in the raw units (times scale)."""

    def __init__(self, input_shape, scale: float = 1.0, mean=(0.0,), std=(1.0,), tokens: bool = False):
        super().__init__()
        shape = (1, -1) + (1,) * (len(input_shape) - 1)
        self.scale, self.tokens = float(scale), bool(tokens)
        # (x / scale - mean) / std == (x - scale*mean) / (scale*std): one pass over the batch fewer per step
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(shape) * self.scale)
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(shape) * self.scale)

    @classmethod
    def from_description(cls, meta: dict) -> "Normalise":
        """The module a checkpoint's description (`DataBundle.describe()`) stands for."""
        return cls(meta["input_shape"], meta["scale"], meta["mean"], meta["std"], meta["tokens"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.tokens:
            return x
        return (x.float() - self.mean) / self.std
