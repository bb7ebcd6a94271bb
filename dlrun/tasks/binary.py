"""Two classes from one sigmoid output: moons, circles, the seeds' student toy, dataset.classes=[3,8]."""
from __future__ import annotations

import torch
from torch import nn

from dlrun.errors import DlrunError
from dlrun.tasks.base import Artifacts, Task, register_task
from dlrun.tasks.metrics import classification_metrics, confusion_matrix
from dlrun.tasks.multiclass import draw_confusion


@register_task
class Binary(Task):
    """0 or 1 from one sigmoid output (binary cross-entropy)"""

    name, losses, classification, weighs_classes = "binary", ("bce", "mse"), True, True

    @classmethod
    def loss_hint(cls, name: str, num_outputs: int) -> str:
        if name == "cross_entropy":
            return ("cross-entropy needs one output per class, and a binary task has a single output; use "
                    "loss=bce (sigmoid output), or task=multiclass for 2 softmax outputs")
        return super().loss_hint(name, num_outputs)

    @classmethod
    def make_loss(cls, name: str, options: dict, num_outputs: int):
        loss = super().make_loss(name, options, num_outputs)
        return ClassWeighted(loss, options["class_weight"]) if "class_weight" in options else loss

    @classmethod
    def adapt(cls, data) -> None:
        if data.task == "multiclass":  # two classes -> one 0/1 column
            if data.num_outputs != 2:
                raise DlrunError(f"task=binary needs two classes, and this dataset has {data.num_outputs}; "
                                 "use task=multiclass, or pick two classes (e.g. dataset.classes=[3,8] for digits).")
            for s in (data.train, data.val, data.test):
                s.y = s.y.float().unsqueeze(1)
            data.num_outputs, data.task = 1, cls.name
        super().adapt(data)

    def predict(self, out: torch.Tensor) -> torch.Tensor:
        return (out > (0 if self.loss_name == "bce" else 0.5)).to(out.dtype)  # a logit, or an MSE-fit value

    def decode(self, out, classes, top_k=3):
        """The class and the probability of class 1 (the sigmoid of the logit; an MSE-fit value, clipped)."""
        p1 = out.float().sigmoid() if self.loss_name == "bce" else out.float().clamp(0, 1)
        names = classes or ["0", "1"]
        return [{"class": names[int(k)], "index": int(k), "probability": float(p)}
                for k, p in zip(self.predict(out).flatten().tolist(), p1.flatten().tolist())]

    def metrics(self, out, y, classes):
        cm = confusion_matrix(self.predict(out).flatten(), y.flatten(), 2)
        return classification_metrics(cm), {"confusion_matrix": cm.tolist()}

    def artifacts(self, a: Artifacts, summary: dict) -> None:
        draw_confusion(a, summary)


class ClassWeighted(nn.Module):
    """A 0/1 target's loss with each sample weighted by its class (trainer.class_weight): sum(w * loss) / sum(w),
    the normalisation torch's CrossEntropyLoss(weight=...) uses, so both classification tasks weigh alike."""

    def __init__(self, loss: nn.Module, weights: list[float]):
        super().__init__()
        self.loss = loss
        self.loss.reduction = "none"
        self.register_buffer("weights", torch.tensor(weights, dtype=torch.float32))

    def forward(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        w = self.weights[y.long()]
        return (self.loss(out, y) * w).sum() / w.sum()
