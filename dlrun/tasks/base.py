"""What is being learned decides the output layer, the loss and the metrics (seed 004's table).

| task       | targets                 | last layer | loss (default first)          |
|------------|-------------------------|------------|-------------------------------|
| multiclass | one class index         | softmax    | cross_entropy                 |
| binary     | 0 or 1                  | sigmoid    | bce                           |
| multilabel | several 0/1 per sample  | sigmoid    | bce                           |
| regression | real numbers            | linear     | mse, mae, huber               |
| reconstruction | the input itself    | linear     | mse, mae                      |
| next_token | the next token, per step | softmax per step | cross_entropy            |
| generation | real inputs (to compare) | a new input | mmd (evaluation only)         |

Reconstruction (autoencoders) takes the normalised input batch as the target, before augmentation:
with `dataset.augment=[noise]` the model sees a corrupted input and must return the clean one (denoising).
Models output raw scores (logits); the softmax or sigmoid lives inside the loss
(`CrossEntropyLoss`, `BCEWithLogitsLoss`), which is the numerically stable form of the same thing.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from dlrun.errors import DlrunError

TASKS = ("multiclass", "binary", "multilabel", "regression", "reconstruction", "next_token", "generation")
LOSSES = {"multiclass": ("cross_entropy",), "binary": ("bce", "mse"), "multilabel": ("bce",),
          "regression": ("mse", "mae", "huber"), "reconstruction": ("mse", "mae"),
          "next_token": ("cross_entropy",), "generation": ("mmd",)}
INPUT_TARGET_TASKS = ("reconstruction", "generation")  # the target is the (normalised) input itself
OUTPUT = {"multiclass": "softmax", "binary": "sigmoid", "multilabel": "sigmoid", "regression": "linear",
          "reconstruction": "linear", "next_token": "softmax", "generation": "linear"}


class StepCrossEntropy(nn.CrossEntropyLoss):
    """Cross-entropy of (batch, steps, vocab) scores against (batch, steps) tokens, averaged over every step."""

    def forward(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return super().forward(out.flatten(0, 1), y.flatten())


class MMD(nn.Module):
    """Squared maximum mean discrepancy (Gretton et al. 2012) between two samples, unbiased, with a sum of
    Gaussian kernels at bandwidths 0.5, 1, 2 and 4 times the square root of the number of features.
    About 0 when both come from one distribution, larger the more they differ; it needs no trained network."""

    SCALES = (0.5, 1.0, 2.0, 4.0)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        a, b = a.flatten(1).float(), b.flatten(1).float()
        n, m = len(a), len(b)
        if n < 2 or m < 2:
            return torch.zeros((), device=a.device)
        z = torch.cat([a, b])
        d2 = torch.cdist(z, z).pow(2)
        k = sum(torch.exp(-d2 / (2 * (s * s * a.shape[1]))) for s in self.SCALES)
        kaa, kbb, kab = k[:n, :n], k[n:, n:], k[:n, n:]
        return ((kaa.sum() - kaa.diagonal().sum()) / (n * (n - 1)) + (kbb.sum() - kbb.diagonal().sum()) / (m * (m - 1))
                - 2 * kab.mean())


@dataclass
class Task:
    name: str
    loss_name: str
    loss_fn: nn.Module

    @property
    def classification(self) -> bool:
        return self.name != "regression" and self.name not in INPUT_TARGET_TASKS

    def target(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """What the output is compared with: the labels, or the (normalised) input itself for reconstruction
        and for generation (whose outputs are compared as a sample with the real batch)."""
        return x if self.name in INPUT_TARGET_TASKS else y

    def predict(self, out: torch.Tensor) -> torch.Tensor:
        """Class indices (multiclass), 0/1 (binary, multilabel) or the values themselves (regression)."""
        if self.name in ("multiclass", "next_token"):
            return out.argmax(dim=-1)  # next_token: (batch, steps, vocab) -> a token per step
        if self.name in ("binary", "multilabel"):
            return (out > 0).to(out.dtype) if self.loss_name == "bce" else (out > 0.5).to(out.dtype)
        return out

    def correct(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Right predictions in a batch, on the device; multilabel counts the fraction of labels right."""
        return self.hits(self.predict(out), y).sum()

    @staticmethod
    def hits(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per sample: 1 for a right prediction (multilabel: the fraction of its labels right), else 0."""
        hit = (pred == y).float()
        return hit.mean(dim=1) if hit.dim() > 1 else hit


def build_task(task: str, loss: dict, num_outputs: int) -> Task:
    """The task (inferred or chosen) with its loss; a loss that cannot fit the task is refused."""
    if task not in TASKS:
        raise DlrunError(f"unknown task '{task}'. Choose one of {', '.join(TASKS)}.")
    loss = dict(loss)
    name = loss.pop("name")
    if name == "auto":
        name = LOSSES[task][0]
    if name not in LOSSES[task]:
        hint = {
            ("multiclass", "bce"): "bce (sigmoid outputs) is for binary or multi-label targets; a single-label "
                                   f"{num_outputs}-class problem uses loss=cross_entropy (softmax outputs)",
            ("binary", "cross_entropy"): "cross-entropy needs one output per class, and a binary task has a single "
                                         "output; use loss=bce (sigmoid output), or task=multiclass for 2 softmax outputs",
        }.get((task, name), f"task={task} takes loss={' or '.join(LOSSES[task])}")
        raise DlrunError(f"loss={name} does not fit task={task}: {hint}.")
    if name == "cross_entropy" and num_outputs < 2:
        raise DlrunError("loss=cross_entropy on a single output cannot learn (softmax of one value is always 1); "
                         "use task=binary with loss=bce.")
    if task == "generation":
        return Task(task, name, MMD())
    if task == "next_token":
        return Task(task, name, StepCrossEntropy(label_smoothing=loss.get("label_smoothing", 0.0)))
    fn = {"cross_entropy": lambda: nn.CrossEntropyLoss(label_smoothing=loss.get("label_smoothing", 0.0)),
          "bce": nn.BCEWithLogitsLoss, "mse": nn.MSELoss, "mae": nn.L1Loss,
          "huber": lambda: nn.HuberLoss(delta=loss.get("delta", 1.0))}[name]()
    return Task(task, name, fn)
