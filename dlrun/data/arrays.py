"""Your own arrays: `dataset=npz dataset.path=FILE.npz` holding `x` and `y` (split by the fractions), or
`x_train`/`y_train`, `x_val`/`y_val`, `x_test`/`y_test` (a missing validation split is taken off the training one).

Inputs: uint8 images, (N, H, W) or (N, C, H, W) with 1 or 3 channels, are kept as uint8 and scaled from 0..255;
other numbers are standardised with the training split's statistics (per channel for images, per feature for
flat rows). Targets: integers are class ids (two: binary), floats are values (regression), several 0/1 columns are
labels (multilabel); `dataset.target_kind=classes|values|labels` forces one reading. The file is read without
pickles: it cannot run code.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from dlrun.data.bundle import DataBundle, Split, standardise_stats, stratified_split
from dlrun.errors import DlrunError
from dlrun.registry import register_dataset


def _load(path: str) -> dict[str, np.ndarray]:
    file = Path(os.path.expanduser(str(path)))
    try:
        with np.load(file, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError) as exc:
        raise DlrunError(f"dataset.path={path} cannot be read as a .npz file ({exc}).") from None


def _kind(y: np.ndarray, kind: str) -> str:
    """How to read the targets: classes, values or labels (auto: several 0/1 columns are labels, integers classes)."""
    if kind != "auto":
        return kind
    if y.ndim == 2 and y.shape[1] > 1:
        return "labels" if np.isin(y, (0, 1)).all() else "values"
    return "classes" if y.dtype.kind in "iub" else "values"


@register_dataset("npz")
def npz(path: str | None = None, class_names: list[str] | None = None, target_kind: str = "auto", val_split: float = 0.15,
        test_split: float = 0.15, split_seed: int = 0) -> DataBundle:
    """Your own NumPy arrays (x, y) in a .npz file."""
    if not path:
        raise DlrunError("dataset=npz needs its file: dataset.path=FILE.npz (arrays x and y).")
    arrays = _load(path)
    given = [s for s in ("train", "val", "test") if f"x_{s}" in arrays and f"y_{s}" in arrays]
    if "train" in given:
        xs = [arrays[f"x_{s}"] for s in given]
        ys = [arrays[f"y_{s}"] for s in given]
        x, y = np.concatenate(xs), np.concatenate(ys)
        owner = np.concatenate([np.full(len(a), i) for i, a in enumerate(xs)])
    elif "x" in arrays and "y" in arrays:
        x, y, owner = arrays["x"], arrays["y"], None
    else:
        raise DlrunError(f"{path} holds arrays {sorted(arrays)}; name them x and y (or x_train, y_train, x_test, ...).")
    if len(x) != len(y):
        raise DlrunError(f"{path}: x has {len(x)} rows and y {len(y)}; they must match.")
    if x.dtype.kind not in "uif" or y.dtype.kind not in "uifb":
        raise DlrunError(f"{path}: x and y must hold numbers (got {x.dtype} and {y.dtype}).")
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        raise DlrunError(f"{path}: x holds NaN or infinite values.")
    if x.dtype == np.uint8 and x.ndim == 3:
        x = x[:, None]  # (N, H, W) greyscale -> one channel
    image = x.dtype == np.uint8 and x.ndim == 4 and x.shape[1] in (1, 3)
    y = y.reshape(len(y), -1) if y.ndim > 1 else y
    kind = _kind(y, target_kind)
    if kind == "classes":
        if y.ndim > 1 or y.dtype.kind == "f" and not (y == np.round(y)).all():
            raise DlrunError(f"{path}: classes are one integer class id per row; y has shape {y.shape}, {y.dtype}.")
        ids = np.unique(y)
        target = torch.from_numpy(np.searchsorted(ids, y).astype(np.int64))  # ids 0..k-1 in their order
        names = [str(c) for c in (class_names if class_names else arrays.get("classes", [f"{v:g}" for v in ids]))]
        if len(names) != len(ids):
            raise DlrunError(f"{path}: {len(names)} class names for {len(ids)} classes in y.")
        if len(ids) < 2:
            raise DlrunError(f"{path}: y holds a single class; a classifier needs two or more.")
        task, num_outputs = ("binary", 1) if len(ids) == 2 else ("multiclass", len(ids))
    else:
        target, names = torch.from_numpy(y.astype(np.float32).reshape(len(y), -1)), None
        task, num_outputs = ("multilabel" if kind == "labels" else "regression"), target.shape[1]
        if kind == "labels":
            names = list(class_names or [str(i) for i in range(target.shape[1])])
    x = torch.from_numpy(np.ascontiguousarray(x if image else x.astype(np.float32)))
    if owner is not None:
        parts = [torch.from_numpy(np.nonzero(owner == given.index(s))[0]) if s in given else None
                 for s in ("train", "val", "test")]
        if parts[1] is None or parts[2] is None:  # what the file lacks is taken off the training rows
            want = [0.0 if parts[1] is not None else val_split, 0.0 if parts[2] is not None else test_split]
            tr = parts[0]
            strata = target[tr] if kind == "classes" else torch.zeros(len(tr))
            keep, va, te = (tr[i] for i in stratified_split(strata, [1 - sum(want), *want], split_seed))
            parts = [keep, parts[1] if parts[1] is not None else va, parts[2] if parts[2] is not None else te]
        tr, va, te = parts
    else:
        strata = target if kind == "classes" else torch.zeros(len(target))
        tr, va, te = stratified_split(strata, [1 - val_split - test_split, val_split, test_split], split_seed)
    scale = 255.0 if image else 1.0
    mean, std = standardise_stats(x[tr], scale)
    std = [s if s > 1e-6 else 1.0 for s in std]
    if kind == "classes" and num_outputs == 1:  # binary: one 0/1 column for one sigmoid output
        target = target.float().unsqueeze(1)
    return DataBundle(*(Split(x[i], target[i]) for i in (tr, va, te)), input_shape=tuple(x.shape[1:]),
                      num_outputs=num_outputs, task=task, scale=scale, mean=mean, std=std, classes=names)
