"""Several 0/1 labels per sample, one sigmoid each: label accuracy and macro precision/recall/F1."""
from __future__ import annotations

import torch

from dlrun.tasks.base import Task, register_task
from dlrun.tasks.metrics import multilabel_metrics


@register_task
class Multilabel(Task):
    """several 0/1 labels per sample (a sigmoid each, binary cross-entropy)"""

    name, losses, classification = "multilabel", ("bce",), True

    def predict(self, out: torch.Tensor) -> torch.Tensor:
        return (out > 0).to(out.dtype)

    def decode(self, out, classes, top_k=3):
        """The labels whose sigmoid is over 0.5, and every label's probability."""
        name = (lambda i: classes[i]) if classes else str
        return [{"labels": [name(i) for i, on in enumerate(hits) if on], "probabilities": probs}
                for hits, probs in zip(self.predict(out).tolist(), out.float().sigmoid().tolist())]

    def metrics(self, out, y, classes):
        return multilabel_metrics(self.predict(out), y), {}
