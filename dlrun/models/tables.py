"""The tables of the tabular agents, `model=value_iteration` and `model=q_learning` (dlrun/rl/tabular.py)."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from dlrun.registry import register_model


class Tables(torch.nn.Module):
    """A tabular agent's V and Q, as buffers (they go into checkpoints like any weights)."""

    def __init__(self, states: int, actions: int):
        super().__init__()
        self.register_buffer("V", torch.zeros(states, dtype=torch.float64))
        self.register_buffer("Q", torch.zeros(states, actions, dtype=torch.float64))

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return self.Q[states]

    def greedy(self) -> np.ndarray:
        return self.Q.argmax(dim=1).numpy()


@register_model("value_iteration")
def value_iteration(input_shape: Sequence[int], num_outputs: int, **agent) -> Tables:
    """Value iteration: V and Q tables from Bellman sweeps over a toy-text env's transition model (needs env=NAME)."""
    return Tables(int(input_shape[0]), num_outputs)  # `agent` (gamma, theta, ...): dlrun/rl reads those keys


@register_model("q_learning")
def q_learning(input_shape: Sequence[int], num_outputs: int, **agent) -> Tables:
    """Tabular Q-learning from epsilon-greedy experience on a toy-text env (needs env=NAME)."""
    return Tables(int(input_shape[0]), num_outputs)
