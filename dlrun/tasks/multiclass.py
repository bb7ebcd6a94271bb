"""One class per sample, from softmax scores: accuracy, macro precision/recall/F1, the confusion matrix."""
from __future__ import annotations

import torch

from dlrun.errors import DlrunError
from dlrun.tasks.base import Artifacts, Task, register_task
from dlrun.tasks.metrics import classification_metrics, confusion_matrix


@register_task
class Multiclass(Task):
    """one class per sample (softmax, cross-entropy); digits, fashion_mnist, blobs"""

    name, losses, classification, weighs_classes = "multiclass", ("cross_entropy",), True, True

    @classmethod
    def loss_hint(cls, name: str, num_outputs: int) -> str:
        if name == "bce":
            return ("bce (sigmoid outputs) is for binary or multi-label targets; a single-label "
                    f"{num_outputs}-class problem uses loss=cross_entropy (softmax outputs)")
        return super().loss_hint(name, num_outputs)

    @classmethod
    def make_loss(cls, name: str, options: dict, num_outputs: int):
        if num_outputs < 2:
            raise DlrunError("loss=cross_entropy on a single output cannot learn (softmax of one value is always 1); "
                             "use task=binary with loss=bce.")
        return super().make_loss(name, options, num_outputs)

    @classmethod
    def adapt(cls, data) -> None:
        if data.task == "binary":  # one 0/1 column -> two softmax outputs
            for s in (data.train, data.val, data.test):
                s.y = s.y.squeeze(1).long()
            data.num_outputs, data.task = 2, cls.name
        super().adapt(data)

    def from_column(self, column: torch.Tensor) -> torch.Tensor:
        return column.long()  # class ids

    def predict(self, out: torch.Tensor) -> torch.Tensor:
        return out.argmax(dim=-1)

    def decode(self, out, classes, top_k=3):
        """The class (name, index, probability) and the `top_k` likeliest, from the softmax."""
        probs = out.float().softmax(dim=-1)
        top = probs.topk(min(top_k, probs.shape[-1]), dim=-1)
        name = (lambda i: classes[i]) if classes else str
        return [{"class": name(ids[0]), "index": ids[0], "probability": ps[0],
                 "top": [{"class": name(i), "probability": p} for i, p in zip(ids, ps)]}
                for ids, ps in zip(top.indices.tolist(), top.values.tolist())]

    def metrics(self, out, y, classes):
        k = len(classes) if classes else int(max(out.shape[1], 2))
        cm = confusion_matrix(self.predict(out), y, k)
        return classification_metrics(cm), {"confusion_matrix": cm.tolist()}

    def artifacts(self, a: Artifacts, summary: dict) -> None:
        draw_confusion(a, summary)


def draw_confusion(a: Artifacts, summary: dict) -> None:
    """confusion_matrix.png: test counts, true classes down, predictions across."""
    a.plotter.confusion(summary["confusion_matrix"], a.data.classes, a.run_dir / "confusion_matrix.png",
                        f"{a.title}: test confusion matrix")
