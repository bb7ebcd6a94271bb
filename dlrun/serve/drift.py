"""The skew guard: the served inputs against the training split's statistics that the checkpoint carries (the mean
and std per channel or feature of x / scale, the numbers `Normalise` standardises with). Kept over the recent
inputs (exponentially weighted, half-life `halflife` inputs), so a shift shows within a few hundred requests:
- z per channel: (served mean - training mean) / training std; `mean_z`: the mean of |z| over channels;
- std ratio per channel: served std / training std; `std_ratio`: their mean (1 when the spread is the training one);
- `outside_share`: the share of inputs with a value beyond the training mean +- 4 std of its channel."""
from __future__ import annotations

import threading

import torch

OUTSIDE_STDS = 4.0


class Drift:
    """Running statistics of the served inputs of one model version."""

    def __init__(self, meta: dict, halflife: float = 1000.0):
        shape = tuple(meta["input_shape"])
        channels = shape[0] if shape else 1
        mean, std = list(meta["mean"]), list(meta["std"])
        if len(mean) == 1:
            mean, std = mean * channels, std * channels
        self.channels, self.scale, self.halflife = channels, float(meta["scale"]), float(halflife)
        self.mean = torch.tensor(mean, dtype=torch.float64)
        self.std = torch.tensor([s if s > 0 else 1.0 for s in std], dtype=torch.float64)
        self._sum = torch.zeros(channels, dtype=torch.float64)
        self._sumsq = torch.zeros(channels, dtype=torch.float64)
        self._values = self._inputs = self._outside = 0.0
        self._lock = threading.Lock()

    @classmethod
    def of(cls, meta: dict) -> "Drift | None":
        """The guard of a model's inputs, or None where there is nothing to compare (token ids, odd statistics)."""
        shape = tuple(meta["input_shape"])
        if meta["tokens"] or not shape or len(meta["mean"]) not in (1, shape[0]) or len(meta["std"]) != len(meta["mean"]):
            return None
        return cls(meta)

    def update(self, raw: torch.Tensor) -> None:
        """Add a batch of raw inputs (N, *input_shape), as served."""
        n = len(raw)
        if not n:
            return
        x = raw.detach().to("cpu", torch.float64).reshape(n, self.channels, -1) / self.scale
        far = ((x - self.mean[:, None]).abs() > OUTSIDE_STDS * self.std[:, None]).flatten(1).any(dim=1)
        s, sq, outside = x.sum(dim=(0, 2)), (x * x).sum(dim=(0, 2)), float(far.sum())
        keep = 0.5 ** (n / self.halflife)
        with self._lock:
            self._sum = self._sum * keep + s
            self._sumsq = self._sumsq * keep + sq
            self._values = self._values * keep + n * x.shape[2]
            self._inputs = self._inputs * keep + n
            self._outside = self._outside * keep + outside

    def figures(self) -> dict | None:
        """{z, std_ratio (per channel), mean_z, std_ratio_mean, outside_share}, or None before any input."""
        with self._lock:
            if not self._inputs:
                return None
            mean = self._sum / self._values
            var = (self._sumsq / self._values - mean * mean).clamp(min=0)
            inputs, outside = self._inputs, self._outside
        z = (mean - self.mean) / self.std
        ratio = var.sqrt() / self.std
        return {"z": z.tolist(), "std_ratio": ratio.tolist(), "mean_z": float(z.abs().mean()),
                "std_ratio_mean": float(ratio.mean()), "outside_share": min(1.0, outside / inputs)}
