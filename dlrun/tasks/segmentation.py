"""A class per pixel (semantic segmentation): the model gives (N, classes, H, W) scores, the target is a (N, H, W)
mask of class ids (0 = background). The loss is cross-entropy per pixel, or cross-entropy plus soft Dice
(`loss=ce_dice`: Milletari et al. 2016, which weighs small objects as much as the background around them).
Accuracy counts pixels. The test adds torchmetrics' mean IoU (Jaccard) and Dice (F1) over the classes present in the
test masks or the predictions, pixel accuracy and each class's IoU (iou_CLASS), and draws masks.png; `dlrun predict
--out FILE` also writes each input's predicted mask as a PNG of class ids beside FILE.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dlrun.errors import DlrunError
from dlrun.tasks.base import Artifacts, Task, per_input_paths, register_task

SHOWN = 8  # test images in masks.png


class SoftDice(nn.Module):
    """1 - the soft Dice coefficient of the softmax against the one-hot mask, per class over the batch's pixels,
    averaged over the classes (smoothed by 1, so a class absent from both scores about 1)."""

    def forward(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        probs = out.float().softmax(dim=1)
        classes = torch.arange(out.shape[1], device=y.device).view(1, -1, *[1] * (y.dim() - 1))
        onehot = (y.unsqueeze(1) == classes).float()  # (N, C, H, W) at once: no int64 one-hot, no movedim
        dims = (0, *range(2, out.dim()))
        dice = (2 * (probs * onehot).sum(dims) + 1) / (probs.sum(dims) + onehot.sum(dims) + 1)
        return 1 - dice.mean()


class CrossEntropyDice(nn.Module):
    """Cross-entropy per pixel plus `dice_weight` times the soft Dice loss."""

    def __init__(self, cross_entropy: nn.CrossEntropyLoss, dice_weight: float = 1.0):
        super().__init__()
        self.cross_entropy, self.dice, self.dice_weight = cross_entropy, SoftDice(), dice_weight

    def forward(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.cross_entropy(out, y) + self.dice_weight * self.dice(out, y)


def metric_name(name: str) -> str:
    """A class name as part of a metric's name: lower case, runs of other characters as one underscore."""
    return re.sub(r"[^a-z0-9]+", "_", str(name).lower()).strip("_") or "class"


@register_task
class Segmentation(Task):
    """a class per pixel (softmax per pixel; cross-entropy, Dice); dataset=canvas or dense_folder, model=unet"""

    name, losses, classification, weighs_classes = "segmentation", ("cross_entropy", "ce_dice"), True, True
    model_output = "pixels"
    headline = "test_miou"

    @classmethod
    def make_loss(cls, name: str, options: dict, num_outputs: int) -> nn.Module:
        ce = super().make_loss("cross_entropy", options, num_outputs)  # per pixel: (N, C, H, W) against (N, H, W)
        return CrossEntropyDice(ce, options.get("dice_weight", 1.0)) if name == "ce_dice" else ce

    @classmethod
    def adapt(cls, data) -> None:
        if data.task != cls.name:
            raise DlrunError(f"task=segmentation learns a class per pixel: it needs a mask per image (dataset=canvas, "
                             f"or dataset=dense_folder with a masks/ folder); this dataset gives {data.task} targets.")

    def predict(self, out: torch.Tensor) -> torch.Tensor:
        return out.argmax(dim=1)

    @staticmethod
    def hits(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per image: the fraction of its pixels given their class."""
        return (pred == y).flatten(1).float().mean(dim=1)

    def metrics(self, out, y, classes):
        from torchmetrics.functional.classification import (multiclass_accuracy, multiclass_f1_score,
                                                            multiclass_jaccard_index)

        k, pred = out.shape[1], self.predict(out)
        names = classes if classes and len(classes) == k else [str(i) for i in range(k)]
        per_class = multiclass_jaccard_index(pred, y, k, average="none")
        seen = (torch.bincount(y.flatten(), minlength=k) + torch.bincount(pred.flatten(), minlength=k)) > 0
        metrics = {"miou": multiclass_jaccard_index(pred, y, k, average="macro").item(),  # classes seen only
                   "dice": multiclass_f1_score(pred, y, k, average="macro").item(),
                   "pixel_accuracy": multiclass_accuracy(pred, y, k, average="micro").item()}
        metrics.update({f"iou_{metric_name(n)}": v for n, v, s in zip(names, per_class.tolist(), seen.tolist()) if s})
        return metrics, {}

    def decode(self, out, classes, top_k=3):
        """Each input's mask (a class id per pixel) and its pixels per class."""
        k = out.shape[1]
        names = classes if classes and len(classes) == k else [str(i) for i in range(k)]
        return [{"pixels": dict(zip(names, torch.bincount(mask.flatten(), minlength=k).tolist())),
                 "mask": mask.tolist()} for mask in self.predict(out)]

    def write_files(self, out: torch.Tensor, names: list[str], folder: Path) -> list[Path]:
        """NAME_mask.png per input in `folder`: its predicted class ids as pixel values (8-bit up to 256 classes)."""
        from PIL import Image

        dtype = np.uint8 if out.shape[1] <= 256 else np.uint16
        paths = per_input_paths(names, folder, "_mask.png")
        for path, mask in zip(paths, self.predict(out)):
            Image.fromarray(mask.numpy().astype(dtype)).save(path)
        return paths

    def artifacts(self, a: Artifacts, summary: dict) -> None:
        """masks.png: the first test images, their true masks and the predicted ones, coloured by class."""
        out = torch.cat([o for o, _ in a.outputs])[:SHOWN]
        images = a.data.test.x[:SHOWN].float().cpu()  # (N, channels, H, W): grey or colour
        true, pred = a.data.test.y[:SHOWN].cpu(), self.predict(out).cpu()
        a.plotter.masks(images.tolist(), true.tolist(), pred.tolist(), a.data.classes, a.run_dir / "masks.png",
                        f"{a.title}: test masks")
        a.say(f"test: mean IoU {summary.get('test_miou', 0):.4f}, Dice {summary.get('test_dice', 0):.4f}, pixel "
              f"accuracy {summary.get('test_pixel_accuracy', 0):.4f} (masks.png)")
