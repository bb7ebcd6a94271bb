"""Autoencoders: an encoder squeezes the input into a small code, a decoder rebuilds the input from it.

Both models output a tensor of the input's shape and train with `task=reconstruction` (the target is the
normalised input). With `dataset.augment=[noise]` the input is corrupted and the target is not: a denoising
autoencoder. The VAE (Kingma & Welling 2013) encodes a Gaussian per input, decodes a sample of it, and adds
its KL divergence from N(0, I) to the loss through `aux_loss` (the trainer's analogue of Keras' add_loss).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from dlrun.errors import DlrunError
from dlrun.models.base import Model
from dlrun.models.layers import activation as make_activation
from dlrun.models.layers import init_weights
from dlrun.registry import register_model

KINDS = ("dense", "conv")


def _check(name: str, input_shape: Sequence[int], num_outputs: int, kind: str) -> None:
    if num_outputs != math.prod(input_shape):
        raise DlrunError(f"model={name} rebuilds its input, so it needs task=reconstruction "
                         f"(it was asked for {num_outputs} outputs).")
    if kind not in KINDS:
        raise DlrunError(f"unknown model.kind '{kind}' for model={name}. Choose one of {', '.join(KINDS)}.")
    if kind == "conv" and len(input_shape) != 3:
        raise DlrunError(f"model.kind=conv needs images (channels, height, width); this input has shape "
                         f"{tuple(input_shape)}. Use model.kind=dense.")


def dense_stack(widths: Sequence[int], act: str) -> nn.Sequential:
    """Linear -> activation between consecutive widths; the last Linear has no activation."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths, widths[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2:
            layers.append(make_activation(act))
    return nn.Sequential(*layers)


class Coder(nn.Module):
    """The encoder (input -> `code` numbers) and the decoder (`latent` numbers -> input shape) of one kind."""

    def __init__(self, input_shape: Sequence[int], kind: str, hidden: Sequence[int], channels: Sequence[int],
                 code: int, latent: int, act: str):
        super().__init__()
        self.shape = tuple(int(s) for s in input_shape)
        if kind == "dense":
            widths = [math.prod(self.shape), *map(int, hidden)]
            self.encoder = nn.Sequential(nn.Flatten(), dense_stack([*widths, code], act))
            self.decoder = nn.Sequential(dense_stack([latent, *widths[::-1]], act), nn.Unflatten(1, self.shape))
            return
        c, h, w = self.shape
        enc: list[nn.Module] = []
        for i, ch in enumerate(channels):  # each stride-2 conv halves the size (rounding up)
            enc += [nn.Conv2d(channels[i - 1] if i else c, int(ch), 3, stride=2, padding=1), make_activation(act)]
            h, w = (h + 1) // 2, (w + 1) // 2
        self.encoder = nn.Sequential(*enc, nn.Flatten(), nn.Linear(int(channels[-1]) * h * w, code))
        dec: list[nn.Module] = [nn.Linear(latent, int(channels[-1]) * h * w), make_activation(act),
                                nn.Unflatten(1, (int(channels[-1]), h, w))]
        rev = [int(ch) for ch in channels[::-1]]
        for i, ch in enumerate(rev):  # each transposed conv doubles the size exactly
            dec += [nn.ConvTranspose2d(ch, rev[i + 1] if i + 1 < len(rev) else ch, 4, stride=2, padding=1),
                    make_activation(act)]
        dec.append(nn.Conv2d(rev[-1], c, 3, padding=1))
        self.decoder = nn.Sequential(*dec)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        out = self.decoder(z)
        return out[..., : self.shape[-2], : self.shape[-1]] if out.dim() == 4 else out  # odd sizes: crop


@register_model("autoencoder")
class Autoencoder(nn.Module):
    """Autoencoder (dense or conv): input -> code of `model.latent` numbers -> rebuilt input; denoising with noise."""

    def __init__(self, input_shape: Sequence[int], num_outputs: int, kind: str = "dense",
                 hidden: Sequence[int] = (256, 64), channels: Sequence[int] = (32, 64), latent: int = 16,
                 activation: str = "relu", init: str = "default"):
        super().__init__()
        _check("autoencoder", input_shape, num_outputs, kind)
        self.net = Coder(input_shape, kind, hidden, channels, latent, latent, activation)
        init_weights(self, init)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.encoder(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.decode(self.encode(x))


@register_model("vae")
class VAE(Model):
    """Variational autoencoder: a Gaussian code per input, sampled while training, KL to N(0, I) in the loss."""

    can_sample = True  # sample(n): inputs decoded from the prior

    def __init__(self, input_shape: Sequence[int], num_outputs: int, kind: str = "dense",
                 hidden: Sequence[int] = (256,), channels: Sequence[int] = (32, 64), latent: int = 8,
                 beta: float = 1.0, activation: str = "relu", init: str = "default"):
        super().__init__()
        _check("vae", input_shape, num_outputs, kind)
        self.latent, self.beta, self.values = int(latent), float(beta), math.prod(input_shape)
        self.net = Coder(input_shape, kind, hidden, channels, 2 * self.latent, self.latent, activation)
        init_weights(self, init)
        self.aux_loss: torch.Tensor | None = None

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The mean and log-variance of each input's Gaussian code."""
        mu, logvar = self.net.encoder(x).chunk(2, dim=1)
        return mu, logvar

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mu, logvar = self.encode(x)
        # the reparameterisation trick: z = mu + sigma * eps keeps the sample differentiable in mu and sigma;
        # evaluation decodes the mean, so a test reconstruction is deterministic
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu) if self.training else mu
        kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)  # KL(N(mu, sigma) || N(0, I)), per input
        # the reconstruction loss is a mean over the input's values, so the KL is shared over them too
        self.aux_loss = self.beta * kl.mean() / self.values
        return self.net.decode(z)

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        """n new inputs decoded from codes drawn from the prior N(0, I)."""
        device = next(self.parameters()).device
        return self.net.decode(torch.randn(n, self.latent, device=device))
