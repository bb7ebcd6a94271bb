"""Test-set metrics from outputs, in plain torch, computed once at the end: the confusion matrix and macro
precision/recall/F1 for classification; MSE, MAE and R² for values."""
from __future__ import annotations

import torch


def confusion_matrix(pred: torch.Tensor, y: torch.Tensor, k: int) -> torch.Tensor:
    """k x k counts: row = true class, column = predicted class."""
    return torch.bincount(y.long() * k + pred.long(), minlength=k * k).view(k, k)


def classification_metrics(cm: torch.Tensor) -> dict:
    """Macro precision, recall and F1 from a confusion matrix."""
    cm = cm.double()
    tp = cm.diag()
    return _macro(tp, cm.sum(0), cm.sum(1))


def multilabel_metrics(pred: torch.Tensor, y: torch.Tensor) -> dict:
    """Macro precision, recall and F1 over the labels (each label scored on its own, then averaged)."""
    return _macro((pred * y).sum(0).double(), pred.sum(0).double(), y.sum(0).double())


def _macro(tp: torch.Tensor, predicted: torch.Tensor, actual: torch.Tensor) -> dict:
    precision = tp / predicted.clamp_min(1)
    recall = tp / actual.clamp_min(1)
    f1 = 2 * precision * recall / (precision + recall).clamp_min(1e-12)
    return {"precision_macro": precision.mean().item(), "recall_macro": recall.mean().item(),
            "f1_macro": f1.mean().item()}


def regression_metrics(out: torch.Tensor, y: torch.Tensor) -> dict:
    err = out.double() - y.double()
    ss_tot = ((y.double() - y.double().mean(0)) ** 2).sum()
    return {"mse": err.pow(2).mean().item(), "mae": err.abs().mean().item(),
            "r2": (1 - err.pow(2).sum() / ss_tot).item()}
