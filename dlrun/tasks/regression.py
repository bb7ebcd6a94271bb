"""Real-valued targets from a linear output: MSE, MAE and R², in the data's own units."""
from __future__ import annotations

import torch

from dlrun.tasks.base import Task, register_task
from dlrun.tasks.metrics import regression_metrics


@register_task
class Regression(Task):
    """real numbers from a linear output (mse, mae, huber)"""

    name, losses = "regression", ("mse", "mae", "huber")

    def in_units(self, values: torch.Tensor) -> torch.Tensor:
        """Values as the data gives them: training may have standardised them (a table's target)."""
        values = values.float().flatten(1)
        if self.target_scale is None:
            return values
        mean, std = (torch.tensor(v, dtype=values.dtype, device=values.device) for v in self.target_scale)
        return values * std + mean

    def decode(self, out, classes, top_k=3):
        return [{"value": row[0] if len(row) == 1 else row} for row in self.in_units(out).tolist()]

    def metrics(self, out, y, classes):
        return regression_metrics(self.in_units(out), self.in_units(y)), {}
