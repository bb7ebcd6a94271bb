"""What is being learned decides the loss and the metrics (seed 004's table: softmax + cross-entropy, linear + MSE)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from dlrun.errors import DlrunError


@dataclass
class Task:
    name: str
    loss_fn: nn.Module
    classification: bool

    def correct(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Number of right predictions in a batch, on the device (no sync)."""
        return (out.argmax(dim=1) == y).sum()


def build_task(name: str) -> Task:
    if name == "multiclass":
        return Task(name, nn.CrossEntropyLoss(), True)  # the model outputs logits; softmax lives in the loss
    if name == "regression":
        return Task(name, nn.MSELoss(), False)  # linear output layer
    raise DlrunError(f"unknown task '{name}'. Choose multiclass or regression.")
