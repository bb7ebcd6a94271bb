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


@register_dataset("synthetic")
def synthetic(kind: str = "moons", n_samples: int = 1000, noise: float = 0.2, n_features: int = 2,
              centers: int = 3, n_labels: int = 5, val_split: float = 0.15, test_split: float = 0.15,
              split_seed: int = 0) -> DataBundle:
    """Toy problems: moons, circles, student (binary), blobs (multiclass), multilabel, regression."""
    from sklearn import datasets as skd

    if kind not in KINDS:
        raise DlrunError(f"unknown synthetic kind '{kind}'.{did_you_mean(kind, KINDS)} Choose one of {', '.join(KINDS)}.")
    task = {"moons": "binary", "circles": "binary", "student": "binary", "blobs": "multiclass",
            "regression": "regression", "multilabel": "multilabel"}[kind]
    if kind == "moons":
        x, y = skd.make_moons(n_samples, noise=noise, random_state=split_seed)
    elif kind == "circles":
        x, y = skd.make_circles(n_samples, noise=noise, factor=0.5, random_state=split_seed)
    elif kind == "blobs":
        x, y = skd.make_blobs(n_samples, n_features=n_features, centers=centers, random_state=split_seed)
    elif kind == "student":
        x, y = _student(n_samples, noise, split_seed)
    elif kind == "multilabel":
        x, y = skd.make_multilabel_classification(n_samples, n_features=n_features, n_classes=n_labels,
                                                  random_state=split_seed)
    else:
        x, y = skd.make_regression(n_samples, n_features=n_features, noise=noise * 10, random_state=split_seed)
    x = torch.as_tensor(x, dtype=torch.float32)
    y = torch.as_tensor(y)
    strata = y.long() if task in ("binary", "multiclass") else None
    tr, va, te = stratified_split(strata if strata is not None else torch.zeros(len(y)),
                                  [1 - val_split - test_split, val_split, test_split], split_seed,
                                  stratify=strata is not None)
    if task == "regression":
        y = y.float().unsqueeze(1)
        y = (y - y[tr].mean()) / y[tr].std()  # a unit-scale target keeps default learning rates sensible
    elif task == "binary":
        y = y.float().unsqueeze(1)  # one sigmoid output
    elif task == "multilabel":
        y = y.float()
    else:
        y = y.long()
    mean, std = standardise_stats(x[tr], 1.0)
    outputs = {"binary": 1, "regression": 1, "multilabel": y.shape[1] if y.dim() > 1 else 1,
               "multiclass": int(y.max()) + 1}[task]
    return DataBundle(Split(x[tr], y[tr]), Split(x[va], y[va]), Split(x[te], y[te]),
                      input_shape=(x.shape[1],), num_outputs=outputs, task=task, mean=mean, std=std,
                      classes=["0", "1"] if task == "binary" else None)
