"""Recurrent classifiers and regressors: a simple RNN (Elman), an LSTM and a GRU over a sequence.

Any dataset is read as a sequence of steps: an image (C, H, W) row by row (H steps of C*W features,
the classic "row-by-row MNIST"), a (T, F) sequence as it is, flat features (F,) one number per step.
The head reads the last step's hidden state (both directions when bidirectional), or the mean or max
over all steps.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from dlrun.errors import DlrunError
from dlrun.models.layers import INITS, init_weights
from dlrun.registry import register_model

POOLS = ("last", "mean", "max")


def sequence_shape(input_shape: Sequence[int]) -> tuple[int, int]:
    """(steps, features per step) for an input of shape `input_shape` (no batch dimension)."""
    shape = tuple(int(s) for s in input_shape)
    if len(shape) == 3:
        return shape[1], shape[0] * shape[2]
    if len(shape) == 2:
        return shape
    if len(shape) == 1:
        return shape[0], 1
    raise DlrunError(f"a sequence model cannot read inputs of shape {shape}: it takes (steps, features), "
                     "images (channels, height, width) or flat features.")


def as_sequence(x: torch.Tensor, steps: int, features: int) -> torch.Tensor:
    """A batch as (batch, steps, features); an image batch (B, C, H, W) becomes its rows."""
    if x.dim() == 4:
        x = x.permute(0, 2, 1, 3)  # (B, H, C, W): step h sees row h of every channel
    return x.reshape(x.shape[0], steps, features)


def pool_steps(out: torch.Tensor, pool: str) -> torch.Tensor:
    """(batch, steps, width) -> (batch, width): the mean or max over steps."""
    return out.mean(dim=1) if pool == "mean" else out.amax(dim=1)


class RecurrentNet(nn.Module):
    """sequence -> nn.RNN / nn.LSTM / nn.GRU -> pooled hidden state -> dropout -> dense head."""

    CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}

    def __init__(self, cell: str, input_shape: Sequence[int], num_outputs: int, hidden: int = 128,
                 layers: int = 1, bidirectional: bool = False, dropout: float = 0.0, pool: str = "last",
                 nonlinearity: str = "tanh", init: str = "default", recurrent_init: str = "default",
                 forget_bias: float = 0.0):
        super().__init__()
        if pool not in POOLS:
            raise DlrunError(f"unknown pool '{pool}' for model={cell}. Choose one of {', '.join(POOLS)}.")
        self.steps, self.features = sequence_shape(input_shape)
        self.pool = pool
        kw = {"nonlinearity": nonlinearity} if cell == "rnn" else {}
        # torch's dropout acts between stacked layers only; one layer would warn and do nothing
        self.rnn = self.CELLS[cell](self.features, int(hidden), int(layers), batch_first=True,
                                    bidirectional=bool(bidirectional), dropout=dropout if layers > 1 else 0.0, **kw)
        width = int(hidden) * (2 if bidirectional else 1)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(width, num_outputs)
        init_weights(self.head, init)  # first: it refuses an unknown scheme
        init_recurrent(self.rnn, init, recurrent_init, forget_bias if cell == "lstm" else 0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, h = self.rnn(as_sequence(x, self.steps, self.features))
        if self.pool == "last":
            h = h[0] if isinstance(h, tuple) else h  # an LSTM gives (h_n, c_n)
            dirs = 2 if self.rnn.bidirectional else 1
            z = torch.cat(list(h[-dirs:]), dim=1)  # the last layer's final state, each direction
        else:
            z = pool_steps(out, self.pool)
        return self.head(self.drop(z))


def init_recurrent(rnn: nn.RNNBase, init: str, recurrent_init: str, forget_bias: float) -> None:
    """`init` for the input weights (as for dense layers); `recurrent_init` for the hidden-to-hidden ones:
    default (PyTorch's uniform), orthogonal (Saxe et al. 2014) or identity (Le et al. 2015's IRNN, with ReLU).
    `forget_bias`: the LSTM forget gate's bias starts there (1.0 is Jozefowicz et al. 2015's and Keras' default)."""
    choices = ("default", "orthogonal", "identity")
    if recurrent_init not in choices:
        raise DlrunError(f"unknown recurrent_init '{recurrent_init}'. Choose one of {', '.join(choices)}.")
    gates = {nn.LSTM: 4, nn.GRU: 3}.get(type(rnn), 1)
    for name, p in rnn.named_parameters():
        if name.startswith("weight_ih") and init != "default":
            INITS[init](p)
        elif name.startswith("weight_hh") and recurrent_init != "default":
            with torch.no_grad():
                for w in p.chunk(gates, dim=0):  # one square block per gate
                    nn.init.orthogonal_(w) if recurrent_init == "orthogonal" else nn.init.eye_(w)
        elif name.startswith("bias") and (init != "default" or recurrent_init != "default"):
            nn.init.zeros_(p)
    if forget_bias:
        with torch.no_grad():
            for name, p in rnn.named_parameters():
                if name.startswith("bias_ih"):  # gate order i, f, g, o: the second quarter is the forget gate
                    p.chunk(4)[1].fill_(forget_bias)
                elif name.startswith("bias_hh"):
                    p.chunk(4)[1].zero_()


@register_model("rnn")
def rnn(input_shape: Sequence[int], num_outputs: int, **kw) -> nn.Module:
    """Simple (Elman) RNN: h_t = tanh(W x_t + U h_t-1 + b) over the steps, then a dense head."""
    return RecurrentNet("rnn", input_shape, num_outputs, **kw)


@register_model("lstm")
def lstm(input_shape: Sequence[int], num_outputs: int, **kw) -> nn.Module:
    """LSTM (Hochreiter & Schmidhuber 1997): gated memory cells over the steps, then a dense head."""
    if "nonlinearity" in kw:
        raise DlrunError("model=lstm has no nonlinearity key (its gates fix them); it belongs to model=rnn.")
    return RecurrentNet("lstm", input_shape, num_outputs, **kw)


@register_model("gru")
def gru(input_shape: Sequence[int], num_outputs: int, **kw) -> nn.Module:
    """GRU (Cho et al. 2014): update and reset gates over the steps, then a dense head."""
    if "nonlinearity" in kw or "forget_bias" in kw:
        raise DlrunError("model=gru takes neither nonlinearity nor forget_bias (those are rnn's and lstm's keys).")
    return RecurrentNet("gru", input_shape, num_outputs, **kw)
