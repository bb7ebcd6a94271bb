"""Real-valued targets from a linear output: MSE, MAE and R²."""
from __future__ import annotations

from dlrun.tasks.base import Task, register_task
from dlrun.tasks.metrics import regression_metrics


@register_task
class Regression(Task):
    """real numbers from a linear output (mse, mae, huber)"""

    name, losses = "regression", ("mse", "mae", "huber")

    def decode(self, out, classes, top_k=3):
        return [{"value": row[0] if len(row) == 1 else row} for row in out.float().flatten(1).tolist()]

    def metrics(self, out, y, classes):
        return regression_metrics(out.flatten(1), y.flatten(1)), {}
