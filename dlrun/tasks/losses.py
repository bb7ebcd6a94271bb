"""Losses that torch.nn does not have under these names: cross-entropy over every step, and the MMD."""
from __future__ import annotations

import torch
from torch import nn


class StepCrossEntropy(nn.CrossEntropyLoss):
    """Cross-entropy of (batch, steps, vocab) scores against (batch, steps) tokens, averaged over every step."""

    def forward(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return super().forward(out.flatten(0, 1), y.flatten())


class MMD(nn.Module):
    """Squared maximum mean discrepancy (Gretton et al. 2012) between two samples, unbiased, with a sum of
    Gaussian kernels at bandwidths 0.5, 1, 2 and 4 times the square root of the number of features.
    About 0 when both come from one distribution, larger the more they differ; it needs no trained network."""

    SCALES = (0.5, 1.0, 2.0, 4.0)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        a, b = a.flatten(1).float(), b.flatten(1).float()
        n, m = len(a), len(b)
        if n < 2 or m < 2:
            return torch.zeros((), device=a.device)
        z = torch.cat([a, b])
        d2 = torch.cdist(z, z).pow(2)
        k = sum(torch.exp(-d2 / (2 * (s * s * a.shape[1]))) for s in self.SCALES)
        kaa, kbb, kab = k[:n, :n], k[n:, n:], k[:n, n:]
        return ((kaa.sum() - kaa.diagonal().sum()) / (n * (n - 1)) + (kbb.sum() - kbb.diagonal().sum()) / (m * (m - 1))
                - 2 * kab.mean())
