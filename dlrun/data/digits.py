"""scikit-learn's bundled 8x8 handwritten digits: real data, offline, and small enough for CI."""
from __future__ import annotations

from pathlib import Path

import torch

from dlrun.data.bundle import DataBundle, Split, standardise_stats, stratified_split
from dlrun.registry import register_dataset


def _load_digits():
    """The same file `sklearn.datasets.load_digits` reads, without importing scikit-learn (2 s here)."""
    import importlib.util

    import numpy as np

    spec = importlib.util.find_spec("sklearn")
    path = Path(spec.submodule_search_locations[0], "datasets", "data", "digits.csv.gz") if spec else None
    if path is None or not path.exists():
        from sklearn.datasets import load_digits

        raw = load_digits()
        return raw.data, raw.target
    table = np.loadtxt(path, delimiter=",", dtype=np.float32)
    return table[:, :-1], table[:, -1]


@register_dataset("digits")
def digits(val_split: float = 0.1, test_split: float = 0.2, split_seed: int = 0,
           classes: list[int] | None = None, train_subset: int | None = None) -> DataBundle:
    """8x8 handwritten digits (1797 images, 10 classes), bundled with scikit-learn."""
    pixels, labels = _load_digits()
    x = torch.as_tensor(pixels, dtype=torch.uint8).view(-1, 1, 8, 8)  # pixel values 0..16
    y = torch.as_tensor(labels, dtype=torch.long)
    if classes:  # a subset of digits, relabelled 0..k-1 (two classes make a binary task)
        keep = torch.isin(y, torch.tensor(list(classes)))
        x, y = x[keep], torch.searchsorted(torch.tensor(sorted(classes)), y[keep])
    names = [str(c) for c in sorted(classes)] if classes else [str(i) for i in range(10)]
    tr, va, te = stratified_split(y, [1 - val_split - test_split, val_split, test_split], split_seed)
    if train_subset:  # a small training set, e.g. to show over-fitting and regularisation
        tr = tr[torch.randperm(len(tr), generator=torch.Generator().manual_seed(split_seed))[:train_subset]]
    mean, std = standardise_stats(x[tr], 16.0)
    binary = len(names) == 2
    target = (lambda t: t.float().unsqueeze(1)) if binary else (lambda t: t)
    return DataBundle(Split(x[tr], target(y[tr])), Split(x[va], target(y[va])), Split(x[te], target(y[te])),
                      input_shape=(1, 8, 8), num_outputs=1 if binary else len(names), scale=16.0, mean=mean,
                      std=std, classes=names, task="binary" if binary else "multiclass")
