"""A transformer encoder over a sequence (Vaswani et al. 2017), for classification and regression.

Each step (an image row, a sequence step) is embedded by a dense layer, a positional encoding is added,
nn.TransformerEncoder layers attend over all steps, and the head reads a learned [CLS] token (as BERT
and ViT do) or the mean over steps.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from dlrun.errors import DlrunError
from dlrun.models.layers import init_weights
from dlrun.models.recurrent import as_sequence, sequence_shape
from dlrun.registry import register_model


def sinusoidal_encoding(steps: int, d_model: int) -> torch.Tensor:
    """PE[t, 2i] = sin(t / 10000^(2i/d)), PE[t, 2i+1] = cos(t / 10000^(2i/d)); shape (steps, d_model)."""
    t = torch.arange(steps, dtype=torch.float32).unsqueeze(1)
    freq = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
    pe = torch.zeros(steps, d_model)
    pe[:, 0::2] = torch.sin(t * freq)
    pe[:, 1::2] = torch.cos(t * freq[: d_model // 2])
    return pe


class TransformerNet(nn.Module):
    """steps -> dense embedding (+ [CLS]) + positions -> encoder layers -> final norm -> head."""

    POS = ("sinusoidal", "learned", "none")
    POOLS = ("cls", "mean")

    def __init__(self, input_shape: Sequence[int], num_outputs: int, d_model: int = 64, heads: int = 4,
                 layers: int = 2, ff: int = 128, dropout: float = 0.1, activation: str = "gelu",
                 pos: str = "sinusoidal", pool: str = "cls", norm_first: bool = True, init: str = "default"):
        super().__init__()
        if d_model % heads:
            raise DlrunError(f"model.d_model={d_model} must be a multiple of model.heads={heads} "
                             "(each head attends over d_model/heads features).")
        if pos not in self.POS or pool not in self.POOLS or activation not in ("relu", "gelu"):
            raise DlrunError(f"model=transformer takes pos={'|'.join(self.POS)}, pool={'|'.join(self.POOLS)} and "
                             f"activation=relu|gelu (got pos={pos}, pool={pool}, activation={activation}).")
        self.steps, self.features = sequence_shape(input_shape)
        self.pool = pool
        self.embed = nn.Linear(self.features, d_model)
        self.cls = nn.Parameter(torch.zeros(1, 1, d_model)) if pool == "cls" else None
        n = self.steps + (pool == "cls")
        if pos == "learned":
            self.pos = nn.Parameter(torch.randn(1, n, d_model) * 0.02)
        else:  # a fixed table is not a weight: kept out of the checkpoint, rebuilt on load
            table = sinusoidal_encoding(n, d_model) if pos == "sinusoidal" else torch.zeros(n, d_model)
            self.register_buffer("pos", table.unsqueeze(0), persistent=False)
        layer = nn.TransformerEncoderLayer(d_model, heads, ff, dropout, activation=activation, batch_first=True,
                                           norm_first=norm_first)
        # nested tensors only help with padding masks, and torch warns about them with norm_first
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model) if norm_first else nn.Identity()  # pre-norm layers leave it unnormalised
        self.head = nn.Linear(d_model, num_outputs)
        init_weights(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.embed(as_sequence(x, self.steps, self.features))
        if self.cls is not None:
            z = torch.cat([self.cls.expand(z.shape[0], -1, -1), z], dim=1)
        z = self.norm(self.encoder(z + self.pos))
        return self.head(z[:, 0] if self.cls is not None else z.mean(dim=1))


@register_model("transformer")
def transformer(input_shape: Sequence[int], num_outputs: int, **kw) -> nn.Module:
    """Transformer encoder: step embedding, positional encoding, self-attention layers, [CLS] or mean head."""
    return TransformerNet(input_shape, num_outputs, **kw)
