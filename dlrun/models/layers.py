"""Shared building blocks: activations and weight initialisation by name."""
from __future__ import annotations

import math

import torch
from torch import nn

from dlrun.errors import DlrunError, did_you_mean

ACTIVATIONS = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "selu": nn.SELU,
    "celu": nn.CELU,
    "silu": nn.SiLU,
    "swish": nn.SiLU,
    "mish": nn.Mish,
    "relu6": nn.ReLU6,
    "hardtanh": nn.Hardtanh,
    "hardswish": nn.Hardswish,
    "hardsigmoid": nn.Hardsigmoid,
    "softplus": nn.Softplus,
    "softsign": nn.Softsign,
    "tanhshrink": nn.Tanhshrink,
    "logsigmoid": nn.LogSigmoid,
    "prelu": nn.PReLU,
    "linear": nn.Identity,
}


class Maxout(nn.Module):
    """Maxout (Goodfellow et al. 2013): the max over k linear pieces; features shrink k-fold along dim 1."""

    def __init__(self, k: int = 2):
        super().__init__()
        self.k = k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(1, (x.shape[1] // self.k, self.k)).amax(dim=2)


def activation(name: str, slope: float = 0.01, k: int = 2) -> nn.Module:
    """An activation by name; `slope` for leaky_relu, `k` pieces for maxout (its layer must give k x units)."""
    if name == "leaky_relu":
        return nn.LeakyReLU(slope)
    if name == "maxout":
        return Maxout(k)
    if name not in ACTIVATIONS:
        raise DlrunError(f"unknown activation '{name}'.{did_you_mean(name, [*ACTIVATIONS, 'maxout'])} "
                         f"Choose one of {', '.join(ACTIVATIONS)}, maxout.")
    return ACTIVATIONS[name]()


def _lecun_normal(w: torch.Tensor) -> None:
    fan_in, _ = nn.init._calculate_fan_in_and_fan_out(w)
    nn.init.normal_(w, 0.0, 1.0 / math.sqrt(fan_in))


# Weight initialisers from torch.nn.init; biases are set to zero for every scheme but "default".
INITS = {
    "zeros": nn.init.zeros_,
    "ones": nn.init.ones_,
    "normal": lambda w: nn.init.normal_(w, 0.0, 1.0),
    "uniform": lambda w: nn.init.uniform_(w, -1.0, 1.0),
    "truncated_normal": lambda w: nn.init.trunc_normal_(w, 0.0, 1.0, -2.0, 2.0),
    "lecun": _lecun_normal,
    "he": lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu"),
    "he_normal": lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu"),
    "he_uniform": lambda w: nn.init.kaiming_uniform_(w, nonlinearity="relu"),
    "glorot_uniform": nn.init.xavier_uniform_,
    "glorot_normal": nn.init.xavier_normal_,
}


def init_weights(model: nn.Module, scheme: str = "default") -> nn.Module:
    """Re-initialise every Linear/Conv weight with `scheme` ('default' keeps PyTorch's own)."""
    if scheme == "default":
        return model
    if scheme not in INITS:
        raise DlrunError(f"unknown init '{scheme}'.{did_you_mean(scheme, INITS)} "
                         f"Choose one of default, {', '.join(INITS)}.")
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.ConvTranspose1d, nn.ConvTranspose2d)):
            INITS[scheme](m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return model


def norm_layer(kind: str, features: int, dims: int) -> nn.Module:
    """'none' | 'batch' | 'layer' normalisation for `features` channels of a `dims`-D activation."""
    if kind in (None, "none"):
        return nn.Identity()
    if kind == "batch":
        return nn.BatchNorm1d(features) if dims == 1 else nn.BatchNorm2d(features)
    if kind == "layer":
        return nn.LayerNorm(features) if dims == 1 else nn.GroupNorm(1, features)
    raise DlrunError(f"unknown norm '{kind}'. Choose one of none, batch, layer.")
