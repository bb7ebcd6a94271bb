"""A generative adversarial network (Goodfellow et al. 2014): a generator G makes inputs from noise, a
discriminator D tells them from real ones, and each trains against the other.

The model runs its own update (`train_step`): first D on a real and a generated batch, then G, so that D
calls its generated batch fake and real; each step touches only its own network's weights, with the one
optimizer the run built (torch.optim skips weights without a gradient). In evaluation the model returns
generated inputs and the run scores them against real ones with the maximum mean discrepancy (task=generation).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from dlrun.errors import DlrunError
from dlrun.models.autoencoder import dense_stack
from dlrun.models.base import Model
from dlrun.registry import register_model


@register_model("gan")
class GAN(Model):
    """GAN: dense generator (noise -> input) and discriminator (input -> real or fake), trained in alternation."""

    updates_itself = True  # train_step: one discriminator step, then one generator step

    def __init__(self, input_shape: Sequence[int], num_outputs: int, latent: int = 32,
                 hidden: Sequence[int] = (128, 256), d_hidden: Sequence[int] = (256, 128), slope: float = 0.2):
        super().__init__()
        self.shape, self.latent = tuple(int(s) for s in input_shape), int(latent)
        values = math.prod(self.shape)
        if num_outputs != values:
            raise DlrunError(f"model=gan generates inputs, so it needs task=generation (it was asked for "
                             f"{num_outputs} outputs).")
        self.generator = nn.Sequential(dense_stack([self.latent, *map(int, hidden), values], "relu"),
                                       nn.Unflatten(1, self.shape))
        d_layers: list[nn.Module] = [nn.Flatten()]
        for a, b in zip([values, *map(int, d_hidden)], map(int, d_hidden)):
            d_layers += [nn.Linear(a, b), nn.LeakyReLU(slope)]  # leaky: D passes gradient for every input
        self.discriminator = nn.Sequential(*d_layers, nn.Linear(int(d_hidden[-1]) if d_hidden else values, 1))

    def generate(self, n: int) -> torch.Tensor:
        device = next(self.parameters()).device
        return self.generator(torch.randn(n, self.latent, device=device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """As many generated inputs as `x` holds (evaluation compares them with `x`)."""
        return self.generate(len(x))

    def train_step(self, x: torch.Tensor, optimizer: torch.optim.Optimizer) -> torch.Tensor:
        """One discriminator update, then one generator update; returns their summed losses (detached)."""
        real, fake = torch.ones(len(x), 1, device=x.device), torch.zeros(len(x), 1, device=x.device)
        generated = self.generate(len(x))
        d_loss = (F.binary_cross_entropy_with_logits(self.discriminator(x), real)
                  + F.binary_cross_entropy_with_logits(self.discriminator(generated.detach()), fake))
        self._update(d_loss, optimizer, self.discriminator)
        # the non-saturating generator loss: make D call the generated batch real (stronger early gradients
        # than minimising log(1 - D(G(z))))
        g_loss = F.binary_cross_entropy_with_logits(self.discriminator(generated), real)
        self._update(g_loss, optimizer, self.generator)
        return (d_loss + g_loss).detach()

    def _update(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer, net: nn.Module) -> None:
        """Step `net` alone: the other network's gradients are dropped, so the optimizer leaves it as it is."""
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        own = {id(p) for p in net.parameters()}
        for p in self.parameters():
            if id(p) not in own:
                p.grad = None
        optimizer.step()
