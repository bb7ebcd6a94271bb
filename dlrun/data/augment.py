"""Data augmentation applied per training batch, on the device, after normalisation.

`dataset.augment` is a list of `name` or `name:amount` entries (or `{name: amount}`):

    rotation:15        rotate each image by a random angle in [-15, 15] degrees
    translation:0.1    shift each image by up to 10% of its width and height
    noise:0.1          add gaussian noise with this standard deviation (in normalised units)
    hflip              flip each image left-right with probability 0.5 (`hflip:0.3` sets it)

Every sample draws its own parameters: rotation and translation become one affine warp per image
(`affine_grid` + `grid_sample`, one kernel for the batch instead of a Python loop over images).
torchvision's v2 transforms draw one set of parameters per call, so a batch would move as one.
The draws come from torch's global RNG, which checkpoints save, so resumed runs stay exact.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from dlrun.errors import DlrunError

DEFAULTS = {"rotation": 15.0, "translation": 0.1, "noise": 0.1, "hflip": 0.5}
IMAGE_ONLY = {"rotation", "translation", "hflip"}


def parse_augment(entries: list[Any] | None) -> dict[str, float]:
    """['rotation:10', 'hflip', {'noise': 0.05}] -> {'rotation': 10.0, 'hflip': 0.5, 'noise': 0.05}."""
    out: dict[str, float] = {}
    for entry in entries or []:
        if isinstance(entry, dict) and len(entry) == 1:
            name, amount = next(iter(entry.items()))
        else:
            name, _, amount = str(entry).partition(":")
        name = str(name).strip().lower()
        if name not in DEFAULTS:
            raise DlrunError(f"dataset.augment: unknown augmentation '{name}'; choose from "
                             f"{', '.join(f'{k}[:amount]' for k in DEFAULTS)} (e.g. dataset.augment=[rotation:10,hflip]).")
        try:
            value = DEFAULTS[name] if amount in ("", None) else float(amount)
        except ValueError:
            raise DlrunError(f"dataset.augment: '{entry}' needs a number after ':' (e.g. {name}:{DEFAULTS[name]}).") from None
        if value < 0 or (name == "hflip" and value > 1):
            raise DlrunError(f"dataset.augment: {name}={value} is out of range "
                             f"({'a probability in [0, 1]' if name == 'hflip' else 'a non-negative number'}).")
        out[name] = value
    return out


class Augment:
    """Callable on a normalised float batch (N, C, H, W) or (N, F) for noise only."""

    def __init__(self, spec: dict[str, float], input_shape: tuple[int, ...]):
        image = len(input_shape) == 3
        bad = sorted(set(spec) & IMAGE_ONLY) if not image else []
        if bad:
            raise DlrunError(f"dataset.augment: {', '.join(bad)} apply to images only, and this dataset's inputs "
                             f"have shape {tuple(input_shape)}; use noise:STD instead.")
        self.spec = spec

    def __bool__(self) -> bool:
        return bool(self.spec)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        s = self.spec
        if s.get("hflip"):
            flip = torch.rand(len(x), device=x.device) < s["hflip"]
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
        if s.get("rotation") or s.get("translation"):
            x = self._affine(x, s.get("rotation", 0.0), s.get("translation", 0.0))
        if s.get("noise"):
            x = x + torch.randn_like(x) * s["noise"]
        return x

    @staticmethod
    def _affine(x: torch.Tensor, degrees: float, shift: float) -> torch.Tensor:
        n = len(x)
        angle = (torch.rand(n, device=x.device) * 2 - 1) * math.radians(degrees)
        t = (torch.rand(n, 2, device=x.device) * 2 - 1) * (2 * shift)  # grid coordinates span [-1, 1]: width 2
        cos, sin = angle.cos(), angle.sin()
        theta = torch.stack([torch.stack([cos, -sin, t[:, 0]], 1), torch.stack([sin, cos, t[:, 1]], 1)], 1)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        # pixels shifted in from outside take the border's value (background after normalisation)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
