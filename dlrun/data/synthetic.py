"""Small synthetic problems from scikit-learn and the seeds: fast, seeded, for tests and teaching."""
from __future__ import annotations

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


def _generators(n: int, noise: float, n_features: int, centers: int, n_labels: int, seed: int) -> dict:
    """kind -> (a function making (x, y), the task its targets are, how its labels become targets)."""
    from sklearn import datasets as skd

    return {
        "moons": (lambda: skd.make_moons(n, noise=noise, random_state=seed), "binary", _zero_one),
        "circles": (lambda: skd.make_circles(n, noise=noise, factor=0.5, random_state=seed), "binary", _zero_one),
        "student": (lambda: _student(n, noise, seed), "binary", _zero_one),
        "blobs": (lambda: skd.make_blobs(n, n_features=n_features, centers=centers, random_state=seed), "multiclass",
                  _classes),
        "multilabel": (lambda: skd.make_multilabel_classification(n, n_features=n_features, n_classes=n_labels,
                                                                  random_state=seed), "multilabel", _labels),
        "regression": (lambda: skd.make_regression(n, n_features=n_features, noise=noise * 10, random_state=seed),
                       "regression", _values),
    }


@register_dataset("synthetic")
def synthetic(kind: str = "moons", n_samples: int = 1000, noise: float = 0.2, n_features: int = 2,
              centers: int = 3, n_labels: int = 5, val_split: float = 0.15, test_split: float = 0.15,
              split_seed: int = 0) -> DataBundle:
    """Toy problems: moons, circles, student (binary), blobs (multiclass), multilabel, regression."""
    if kind not in KINDS:
        raise DlrunError(f"unknown synthetic kind '{kind}'.{did_you_mean(kind, KINDS)} Choose one of {', '.join(KINDS)}.")
    make, task, targets = _generators(n_samples, noise, n_features, centers, n_labels, split_seed)[kind]
    x, y = make()
    x, y = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y)
    stratify = targets in (_classes, _zero_one)  # one class per sample: each split gets its share of each
    tr, va, te = stratified_split(y.long() if stratify else torch.zeros(len(y)),
                                  [1 - val_split - test_split, val_split, test_split], split_seed, stratify=stratify)
    y = targets(y, tr)
    mean, std = standardise_stats(x[tr], 1.0)
    outputs = int(y.max()) + 1 if targets is _classes else y.shape[1]
    return DataBundle(Split(x[tr], y[tr]), Split(x[va], y[va]), Split(x[te], y[te]),
                      input_shape=(x.shape[1],), num_outputs=outputs, task=task, mean=mean, std=std,
                      classes=["0", "1"] if targets is _zero_one else None)
