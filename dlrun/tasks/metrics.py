"""Test-set metrics from predictions: accuracy, macro precision/recall/F1 and the confusion matrix
for classification; MSE, MAE and R² for regression and reconstruction. Plain torch, computed once at the end."""
from __future__ import annotations

import math

import torch


def confusion_matrix(pred: torch.Tensor, y: torch.Tensor, k: int) -> torch.Tensor:
    """k x k counts: row = true class, column = predicted class."""
    return torch.bincount(y.long() * k + pred.long(), minlength=k * k).view(k, k)


def classification_metrics(cm: torch.Tensor) -> dict:
    cm = cm.double()
    tp = cm.diag()
    precision = tp / cm.sum(0).clamp_min(1)
    recall = tp / cm.sum(1).clamp_min(1)
    f1 = 2 * precision * recall / (precision + recall).clamp_min(1e-12)
    return {"precision_macro": precision.mean().item(), "recall_macro": recall.mean().item(),
            "f1_macro": f1.mean().item()}


def regression_metrics(out: torch.Tensor, y: torch.Tensor) -> dict:
    err = out.double() - y.double()
    ss_tot = ((y.double() - y.double().mean(0)) ** 2).sum()
    return {"mse": err.pow(2).mean().item(), "mae": err.abs().mean().item(),
            "r2": (1 - err.pow(2).sum() / ss_tot).item()}


def test_metrics(task, out: torch.Tensor, y: torch.Tensor, classes: list[str] | None) -> tuple[dict, torch.Tensor | None]:
    """Metrics for the summary and, for single-label classification, the confusion matrix."""
    out, y = out.cpu(), y.cpu()
    if task.name == "next_token":  # per character: perplexity, and bits (the usual unit for text models)
        ce = torch.nn.functional.cross_entropy(out.flatten(0, 1).double(), y.flatten()).item()
        return {"perplexity": math.exp(ce), "bits_per_token": ce / math.log(2)}, None
    if task.name == "generation":  # a sample of at most 2000 of each: the kernel matrix grows as its square
        return {"mmd": task.loss_fn(out[:2000], y[:2000]).item()}, None
    if task.name in ("regression", "reconstruction"):
        return regression_metrics(out.flatten(1), y.flatten(1)), None
    pred = task.predict(out)
    if task.name == "multilabel":  # per label, then averaged (macro)
        tp = (pred * y).sum(0)
        precision = tp / pred.sum(0).clamp_min(1)
        recall = tp / y.sum(0).clamp_min(1)
        f1 = 2 * precision * recall / (precision + recall).clamp_min(1e-12)
        return {"precision_macro": precision.mean().item(), "recall_macro": recall.mean().item(),
                "f1_macro": f1.mean().item()}, None
    k = len(classes) if classes else int(max(out.shape[1], 2))
    if task.name == "binary":
        pred, y, k = pred.flatten(), y.flatten(), 2
    cm = confusion_matrix(pred, y, k)
    return classification_metrics(cm), cm
