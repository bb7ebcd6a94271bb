"""Small synthetic problems from scikit-learn: fast, seeded, for tests and teaching."""
from __future__ import annotations

import torch

from dlrun.data.bundle import DataBundle, Split, standardise_stats, stratified_split
from dlrun.errors import DlrunError, did_you_mean
from dlrun.registry import register_dataset

KINDS = ("moons", "circles", "blobs", "regression")


@register_dataset("synthetic")
def synthetic(kind: str = "moons", n_samples: int = 1000, noise: float = 0.2, n_features: int = 2,
              centers: int = 3, val_split: float = 0.15, test_split: float = 0.15,
              split_seed: int = 0) -> DataBundle:
    """scikit-learn toy problems: moons, circles, blobs (classification) or regression."""
    from sklearn import datasets as skd

    if kind == "moons":
        x, y = skd.make_moons(n_samples, noise=noise, random_state=split_seed)
    elif kind == "circles":
        x, y = skd.make_circles(n_samples, noise=noise, factor=0.5, random_state=split_seed)
    elif kind == "blobs":
        x, y = skd.make_blobs(n_samples, n_features=n_features, centers=centers, random_state=split_seed)
    elif kind == "regression":
        x, y = skd.make_regression(n_samples, n_features=n_features, noise=noise * 10, random_state=split_seed)
    else:
        raise DlrunError(f"unknown synthetic kind '{kind}'.{did_you_mean(kind, KINDS)} Choose one of {', '.join(KINDS)}.")
    x = torch.as_tensor(x, dtype=torch.float32)
    regression = kind == "regression"
    if regression:
        y = torch.as_tensor(y, dtype=torch.float32).unsqueeze(1)
        y = (y - y.mean()) / y.std()  # a unit-scale target keeps default learning rates sensible
    else:
        y = torch.as_tensor(y, dtype=torch.long)
    tr, va, te = stratified_split(y.squeeze(1) if regression else y,
                                  [1 - val_split - test_split, val_split, test_split],
                                  split_seed, stratify=not regression)
    mean, std = standardise_stats(x[tr], 1.0)
    return DataBundle(Split(x[tr], y[tr]), Split(x[va], y[va]), Split(x[te], y[te]),
                      input_shape=(x.shape[1],), num_outputs=1 if regression else int(y.max()) + 1,
                      task="regression" if regression else "multiclass", mean=mean, std=std)
