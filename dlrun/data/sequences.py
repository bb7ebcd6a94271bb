"""Synthetic sequence problems that need memory: the adding problem and recall of the first symbol.

Both are generated from `split_seed` in a fraction of a second, offline, and scale in difficulty with
`length`: a model must carry information across all the steps to beat the trivial answer.
"""
from __future__ import annotations

import torch

from dlrun.data.bundle import DataBundle, Split, stratified_split
from dlrun.errors import DlrunError, did_you_mean
from dlrun.registry import register_dataset

KINDS = ("adding", "recall")


def adding_problem(n: int, length: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Hochreiter & Schmidhuber (1997): step t holds (u_t, m_t) with u_t ~ U(0, 1); m_t marks one step in
    each half of the sequence; the target is the sum of the two marked u. Always answering 1 scores an
    MSE of 1/6 (the variance of the sum), so only a model that remembers beats 0.167."""
    values = torch.rand(n, length, generator=g)
    half = length // 2
    first = torch.randint(0, half, (n,), generator=g)
    second = torch.randint(half, length, (n,), generator=g)
    marks = torch.zeros(n, length)
    rows = torch.arange(n)
    marks[rows, first] = 1.0
    marks[rows, second] = 1.0
    x = torch.stack([values, marks], dim=2)
    y = (values[rows, first] + values[rows, second]).unsqueeze(1)
    return x, y


def recall_problem(n: int, length: int, symbols: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Name the symbol seen at the first step after `length - 1` random distractor symbols (one-hot each).
    Chance is 1/symbols; the first step's symbol is the class, and nothing after it tells which it was."""
    tokens = torch.randint(0, symbols, (n, length), generator=g)
    x = torch.nn.functional.one_hot(tokens, symbols).float()
    return x, tokens[:, 0]


@register_dataset("sequences")
def sequences(kind: str = "adding", length: int = 50, n_samples: int = 10000, symbols: int = 8,
              val_split: float = 0.1, test_split: float = 0.1, split_seed: int = 0) -> DataBundle:
    """Sequence problems: adding (regression, Hochreiter & Schmidhuber 1997), recall (first symbol, multiclass)."""
    if kind not in KINDS:
        raise DlrunError(f"unknown sequences kind '{kind}'.{did_you_mean(kind, KINDS)} Choose one of {', '.join(KINDS)}.")
    if length < 2 or n_samples < 10 or symbols < 2:
        raise DlrunError(f"dataset=sequences needs length >= 2, n_samples >= 10 and symbols >= 2 "
                         f"(got length={length}, n_samples={n_samples}, symbols={symbols}).")
    g = torch.Generator().manual_seed(split_seed)
    if kind == "adding":
        x, y = adding_problem(n_samples, length, g)
    else:
        x, y = recall_problem(n_samples, length, symbols, g)
    # every sample is drawn independently, so a plain random split is an honest one
    tr, va, te = stratified_split(torch.zeros(n_samples), [1 - val_split - test_split, val_split, test_split],
                                  split_seed, stratify=False)
    task, outputs = ("regression", 1) if kind == "adding" else ("multiclass", symbols)
    classes = [str(s) for s in range(symbols)] if kind == "recall" else None
    return DataBundle(Split(x[tr], y[tr]), Split(x[va], y[va]), Split(x[te], y[te]), input_shape=(length, x.shape[2]),
                      num_outputs=outputs, task=task, classes=classes)
