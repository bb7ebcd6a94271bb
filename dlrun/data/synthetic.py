"""Small synthetic problems from scikit-learn and the seeds: fast, seeded, for tests and teaching."""
from __future__ import annotations

import dataclasses
from typing import Callable

import torch

from dlrun.data.bundle import DataBundle, Split, standardise_stats, stratified_split
from dlrun.errors import DlrunError, did_you_mean
from dlrun.registry import register_dataset

KINDS = ("moons", "circles", "blobs", "regression", "multilabel", "student")


def _student(n: int, noise: float, seed: int):
    """Seed 001's toy: will a student pass, from classes attended (0-20) and hours studied (0-15)?"""
    g = torch.Generator().manual_seed(seed)
    classes, hours = torch.rand(n, generator=g) * 20, torch.rand(n, generator=g) * 15
    score = 0.3 * classes + 0.5 * hours - 7.5 + noise * 4 * torch.randn(n, generator=g)
    return torch.stack([classes, hours], 1), (score > 0).long()


def _classes(y: torch.Tensor, tr: torch.Tensor) -> torch.Tensor:
    return y.long()


def _zero_one(y: torch.Tensor, tr: torch.Tensor) -> torch.Tensor:
    return y.float().unsqueeze(1)  # one sigmoid output


def _labels(y: torch.Tensor, tr: torch.Tensor) -> torch.Tensor:
    return y.float()


def _values(y: torch.Tensor, tr: torch.Tensor) -> torch.Tensor:
    y = y.float().unsqueeze(1)
    return (y - y[tr].mean()) / y[tr].std()  # a unit-scale target keeps default learning rates sensible


@dataclasses.dataclass
class Kind:
    """One synthetic problem: how (x, y) are made, the task of its targets, how labels become targets, whether
    the splits keep each class's share, and the class names."""

    make: Callable
    task: str
    targets: Callable
    stratify: bool = False
    classes: list[str] | None = None


def _kinds(n: int, noise: float, n_features: int, centers: int, n_labels: int, seed: int) -> dict[str, Kind]:
    from sklearn import datasets as skd

    two = {"targets": _zero_one, "stratify": True, "classes": ["0", "1"]}
    return {
        "moons": Kind(lambda: skd.make_moons(n, noise=noise, random_state=seed), "binary", **two),
        "circles": Kind(lambda: skd.make_circles(n, noise=noise, factor=0.5, random_state=seed), "binary", **two),
        "student": Kind(lambda: _student(n, noise, seed), "binary", **two),
        "blobs": Kind(lambda: skd.make_blobs(n, n_features=n_features, centers=centers, random_state=seed),
                      "multiclass", _classes, stratify=True),
        "multilabel": Kind(lambda: skd.make_multilabel_classification(n, n_features=n_features, n_classes=n_labels,
                                                                      random_state=seed), "multilabel", _labels),
        "regression": Kind(lambda: skd.make_regression(n, n_features=n_features, noise=noise * 10, random_state=seed),
                           "regression", _values),
    }


@register_dataset("synthetic")
def synthetic(kind: str = "moons", n_samples: int = 1000, noise: float = 0.2, n_features: int = 2,
              centers: int = 3, n_labels: int = 5, val_split: float = 0.15, test_split: float = 0.15,
              split_seed: int = 0) -> DataBundle:
    """Toy problems: moons, circles, student (binary), blobs (multiclass), multilabel, regression."""
    if kind not in KINDS:
        raise DlrunError(f"unknown synthetic kind '{kind}'.{did_you_mean(kind, KINDS)} Choose one of {', '.join(KINDS)}.")
    spec = _kinds(n_samples, noise, n_features, centers, n_labels, split_seed)[kind]
    x, y = spec.make()
    x, y = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y)
    tr, va, te = stratified_split(y.long() if spec.stratify else torch.zeros(len(y)),
                                  [1 - val_split - test_split, val_split, test_split], split_seed, stratify=spec.stratify)
    y = spec.targets(y, tr)
    mean, std = standardise_stats(x[tr], 1.0)
    outputs = int(y.max()) + 1 if y.dim() == 1 else y.shape[1]  # class indices, or one column per output
    return DataBundle(Split(x[tr], y[tr]), Split(x[va], y[va]), Split(x[te], y[te]),
                      input_shape=(x.shape[1],), num_outputs=outputs, task=spec.task, mean=mean, std=std,
                      classes=spec.classes)
