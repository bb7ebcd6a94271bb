"""The Q-network of `model=dqn` (its agent, the replay and the updates: dlrun/rl/dqn.py)."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from dlrun.models.base import Model
from dlrun.registry import register_model


class QNetwork(Model):
    """Q(s, .): an MLP over a vector observation, or the Nature-DQN CNN over stacked uint8 frames."""

    def __init__(self, obs_shape: tuple, n_actions: int, hidden: list[int] = (256, 256), activation: str = "relu"):
        super().__init__()
        act = {"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU, "gelu": nn.GELU}[activation]
        self.frames = len(obs_shape) == 3
        if self.frames:  # (stack, 84, 84): Mnih et al. 2015's network
            self.net = nn.Sequential(
                nn.Conv2d(obs_shape[0], 32, 8, 4), nn.ReLU(), nn.Conv2d(32, 64, 4, 2), nn.ReLU(),
                nn.Conv2d(64, 64, 3, 1), nn.ReLU(), nn.Flatten(), nn.Linear(64 * 7 * 7, 512), nn.ReLU(),
                nn.Linear(512, n_actions))
            return
        layers, width = [], int(torch.tensor(obs_shape).prod())
        for h in hidden:
            layers += [nn.Linear(width, h), act()]
            width = h
        self.net = nn.Sequential(nn.Flatten(), *layers, nn.Linear(width, n_actions))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.float() / 255.0 if self.frames else x.float())


@register_model("dqn")
def dqn(input_shape: Sequence[int], num_outputs: int, hidden: Sequence[int] = (256, 256), activation: str = "relu",
        **agent) -> QNetwork:
    """Deep Q-network: Q(s, .) by an MLP, or the Nature-DQN CNN on stacked frames (needs env=NAME)."""
    return QNetwork(tuple(input_shape), num_outputs, list(hidden), activation)  # `agent`: dlrun/rl reads those keys
