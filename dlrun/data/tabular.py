"""Your own table: a CSV file's rows as features and targets (`dataset=csv dataset.path=FILE dataset.target=COLUMN`).

The rules, in the order they apply (conf/dataset/csv.yaml shows every key):
- The delimiter and whether the first row is a header are sniffed from the file's start (`dataset.delimiter`,
  `dataset.header` force them); a UTF-8 byte-order mark is dropped; a quoted field may hold the delimiter.
- Rows without a target are dropped and counted. Missing feature values follow `dataset.missing`: `mean` (the
  default: a number gets the training split's mean, a category its own category "(missing)"), `drop` (the row
  goes, counted) or `error` (the first one is named).
- A column of numbers stays a number (standardised by the run's `Normalise`, with the training split's
  statistics). A column of text is a category, one-hot (`dataset.encoding=onehot`) or one integer code
  (`encoding=index`, for an embedding layer in `model=graph`). A column of numbers with a few words in it is
  refused, naming the row and the value (list it in `dataset.categorical` to read it as categories).
- The task follows the target: text, or integers with at most `dataset.max_classes` values, are classes (two:
  binary, more: multiclass); other numbers are values (regression; standardised for training, reported and
  predicted in the file's own units); several 0/1 columns are labels (multilabel), several number columns a
  regression with several outputs. `dataset.target_kind=classes|values|labels` forces one reading.
- Splits: `dataset.split_column` (values train, val, test), else fractions, stratified by class, seeded.
Everything needed to prepare new rows the same way (columns, categories, fill values, class names, the target's
scale) goes into the checkpoint, so `dlrun predict RUN rows.csv` matches columns by name and ignores the rest.
"""
from __future__ import annotations

import csv
import os
import stat
from pathlib import Path

import numpy as np
import torch

from dlrun.data.bundle import DataBundle, Split, standardise_stats, stratified_split
from dlrun.errors import DlrunError
from dlrun.registry import register_dataset

MISSING = "(missing)"  # the category a missing value becomes under missing=mean
SPLITS = {"train": 0, "training": 0, "val": 1, "valid": 1, "validation": 1, "dev": 1, "test": 2}
TARGET_KINDS = ("auto", "classes", "values", "labels")


# ---- reading -----------------------------------------------------------------------------------------------
def read_table(path: str | Path, delimiter: str | None = None, header: bool | str = "auto", max_mb: float = 500):
    """The file as a DataFrame of strings (missing cells NaN), with `.attrs['first_row']`: the file line of row 0."""
    import pandas as pd

    file = Path(os.path.expanduser(str(path)))
    try:
        info = file.stat()
    except OSError as exc:
        raise DlrunError(f"dataset.path={path}: cannot read it ({exc.strerror or exc}).") from None
    if not stat.S_ISREG(info.st_mode):
        raise DlrunError(f"{file} is not a regular file; give a CSV file.")
    if info.st_size > max_mb * 1e6:
        raise DlrunError(f"{file} has {info.st_size / 1e6:.0f} MB, over dataset.max_mb={max_mb:g}: the table is held in "
                         "memory. Raise dataset.max_mb if this machine has the memory for it.")
    with open(file, "rb") as f:
        head = f.read(65536)
    try:
        sample = head.decode("utf-8-sig", errors="strict" if len(head) < 65536 else "ignore")
    except UnicodeDecodeError:
        raise DlrunError(f"{file} is not UTF-8 text; save it as UTF-8 CSV.") from None
    if not sample.strip():
        raise DlrunError(f"{file} is empty.")
    sniffer = csv.Sniffer()
    if delimiter is None:
        try:
            delimiter = sniffer.sniff(sample, delimiters=",;\t|").delimiter
        except csv.Error:
            delimiter = ","  # one column, or too irregular to tell: the CSV default
    if header == "auto":
        try:
            header = sniffer.has_header(sample)
        except csv.Error:
            header = True
    try:
        frame = pd.read_csv(file, sep=delimiter, header=0 if header else None, dtype=str, encoding="utf-8-sig",
                            skipinitialspace=True, skip_blank_lines=True)
    except pd.errors.EmptyDataError:
        raise DlrunError(f"{file} holds no rows.") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise DlrunError(f"{file} cannot be read as CSV: {str(exc).strip().splitlines()[-1]}") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    frame = frame.apply(lambda s: s.str.strip())
    frame.attrs["first_row"] = 2 if header else 1
    frame.attrs["file"] = str(file)
    return frame


def _row(frame, i) -> str:
    """'FILE, row N' for the frame's row label `i` (its line in the file)."""
    return f"{frame.attrs.get('file', 'the table')}, row {int(i) + frame.attrs.get('first_row', 1)}"


def _numbers(frame, column: str, strict: bool = True):
    """The column as floats (NaN where missing); a word among numbers is refused, naming it."""
    import pandas as pd

    values = pd.to_numeric(frame[column], errors="coerce")
    bad = values.isna() & frame[column].notna()
    if strict and bad.any():
        i = bad.idxmax()
        raise DlrunError(f"{_row(frame, i)}: {frame[column][i]!r} in column '{column}' is not a number, and the column's "
                         f"other values are numbers. Fix the value, or list the column in dataset.categorical.")
    return values.astype("float64")


# ---- the columns' encoding: shared by training and `dlrun predict` -----------------------------------------
def column_kinds(frame, columns: list[str], categorical: list[str] | None, max_categories: int) -> list[dict]:
    """Each feature column's kind: numeric, or categorical with its categories (sorted; from the whole file)."""
    import pandas as pd

    specs = []
    for name in columns:
        values = frame[name].dropna()
        numeric = pd.to_numeric(values, errors="coerce")
        words = numeric.isna()
        if categorical is not None and name not in categorical or categorical is None and not words.any():
            if categorical is not None and words.any():
                _numbers(frame, name)  # named as numeric but holds words: refused with the row
            specs.append({"name": name, "kind": "numeric"})
            continue
        if categorical is None and words.mean() < 0.5:  # mostly numbers: a typo, not a category
            _numbers(frame, name)
        cats = sorted(set(values.tolist()) | ({MISSING} if frame[name].isna().any() else set()))
        if len(cats) > max_categories:
            raise DlrunError(f"column '{name}' has {len(cats)} distinct values, over dataset.max_categories="
                             f"{max_categories}: it looks like an identifier or free text. Leave it out with "
                             "dataset.features=[...], or raise dataset.max_categories.")
        specs.append({"name": name, "kind": "categorical", "categories": cats})
    return specs


def encode(frame, specs: list[dict], encoding: str, missing: str) -> np.ndarray:
    """Rows -> (N, features) float32, every column as `specs` says; missing values filled (numbers: the training
    mean in `fill`; categories: "(missing)") or refused; an unseen category refused, naming it."""
    parts = []
    for spec in specs:
        name = spec["name"]
        if name not in frame.columns:
            raise DlrunError(f"{frame.attrs.get('file', 'the table')} has no column '{name}', which the model reads; "
                             f"its columns: {', '.join(frame.columns)}.")
        if spec["kind"] == "numeric":
            values = _numbers(frame, name)
            if values.isna().any():
                if missing != "mean":
                    raise DlrunError(f"{_row(frame, values.isna().idxmax())}: column '{name}' has no value "
                                     f"(dataset.missing={missing}).")
                values = values.fillna(spec["fill"])
            parts.append(values.to_numpy(np.float32)[:, None])
            continue
        column = frame[name]
        if column.isna().any() and missing != "mean":
            raise DlrunError(f"{_row(frame, column.isna().idxmax())}: column '{name}' has no value "
                             f"(dataset.missing={missing}).")
        lookup = {c: i for i, c in enumerate(spec["categories"])}
        codes = column.fillna(MISSING).map(lookup)
        if codes.isna().any():
            i = codes.isna().idxmax()
            known = ", ".join(map(repr, spec["categories"][:10])) + (" ..." if len(spec["categories"]) > 10 else "")
            raise DlrunError(f"{_row(frame, i)}: {column.fillna(MISSING)[i]!r} is not a category of column '{name}' "
                             f"the model was trained on ({known}).")
        codes = codes.to_numpy(np.int64)
        if encoding == "index":
            parts.append(codes.astype(np.float32)[:, None])
        else:
            parts.append(np.eye(len(spec["categories"]), dtype=np.float32)[codes])
    return np.concatenate(parts, axis=1) if parts else np.zeros((len(frame), 0), np.float32)


def feature_names(specs: list[dict], encoding: str) -> dict[str, list[int]]:
    """Each column's indices in the encoded vector, plus the groups `numeric` and `categorical` (for model=graph)."""
    names, groups, at = {}, {"numeric": [], "categorical": []}, 0
    for spec in specs:
        width = len(spec["categories"]) if spec["kind"] == "categorical" and encoding == "onehot" else 1
        names[spec["name"]] = list(range(at, at + width))
        groups[spec["kind"]] += names[spec["name"]]
        at += width
    return {**names, **groups}


def read_rows(path: str | Path, meta: dict) -> tuple[torch.Tensor, list[str]]:
    """New rows for `dlrun predict`, prepared exactly as the training rows were: (raw features, one name per row)."""
    table = meta["table"]
    frame = read_table(path, header=True)
    x = encode(frame, table["columns"], table["encoding"], "mean" if table["missing"] == "mean" else "error")
    return torch.from_numpy(x), [_row(frame, i) for i in frame.index]


# ---- targets ------------------------------------------------------------------------------------------------
def read_targets(frame, targets: list[str], kind: str, max_classes: int):
    """(targets, task, number of outputs, class names, codes to stratify by or None) from the target columns,
    read as `kind`: classes, values, labels, or auto (classes for text or few integers, else values; several
    0/1 columns: labels)."""
    if len(targets) > 1:
        values = np.stack([_numbers(frame, t).to_numpy() for t in targets], axis=1)
        if kind == "classes":
            raise DlrunError("dataset.target_kind=classes takes one target column; dataset.target names "
                             f"{len(targets)}.")
        y = torch.tensor(values, dtype=torch.float32)
        if kind != "values" and np.isin(values, (0.0, 1.0)).all():
            return y, "multilabel", len(targets), list(targets), None
        if kind == "labels":
            raise DlrunError(f"dataset.target_kind=labels takes 0/1 values; columns {', '.join(targets)} hold others.")
        return y, "regression", len(targets), None, None
    if kind == "labels":
        raise DlrunError("dataset.target_kind=labels takes several 0/1 target columns (dataset.target=[a,b,...]).")
    column = frame[targets[0]]
    numbers = _numbers(frame, targets[0], strict=False)
    words = numbers.isna().any()
    few_integers = not words and bool((numbers == numbers.round()).all()) and numbers.nunique() <= max_classes
    if kind == "values" or kind == "auto" and not words and not few_integers:
        if words:
            _numbers(frame, targets[0])  # refused, naming the row
        return torch.tensor(numbers.to_numpy()[:, None], dtype=torch.float32), "regression", 1, None, None
    if words:
        names = sorted(column.unique().tolist())
    else:  # numbers as classes, in numeric order, named as they are written without a trailing .0
        names = [f"{v:g}" for v in sorted(numbers.unique())]
        column = numbers.map(lambda v: f"{v:g}")
    if len(names) < 2:
        raise DlrunError(f"target column '{targets[0]}' has a single class ({names[0]!r}); a classifier needs two or "
                         "more. Check dataset.target, or use dataset.target_kind=values for a value.")
    codes = torch.tensor(column.map({c: i for i, c in enumerate(names)}).to_numpy(np.int64))
    if len(names) == 2:  # one sigmoid output; task=multiclass makes it two softmax outputs
        return codes.float().unsqueeze(1), "binary", 1, names, codes
    return codes, "multiclass", len(names), names, codes


def split_indices(frame, split_column: str | None, stratify_by, fractions: list[float], seed: int):
    """Train, val and test row positions: from the split column's values, or by fractions (stratified)."""
    if split_column is None:
        codes = stratify_by if stratify_by is not None else torch.zeros(len(frame), dtype=torch.long)
        return stratified_split(codes, fractions, seed)
    names = frame[split_column].str.lower().map(SPLITS)
    if names.isna().any():
        i = names.isna().idxmax()
        raise DlrunError(f"{_row(frame, i)}: {frame[split_column][i]!r} in the split column '{split_column}' is not "
                         "train, val or test.")
    part = torch.tensor(names.to_numpy(np.int64))
    return [torch.nonzero(part == k).flatten() for k in range(3)]


# ---- the dataset --------------------------------------------------------------------------------------------
@register_dataset("csv")
def csv_table(path: str | None = None, target: str | list[str] | None = None, features: list[str] | None = None,
              categorical: list[str] | None = None, encoding: str = "onehot", missing: str = "mean",
              target_kind: str = "auto", delimiter: str | None = None, header: bool | str = "auto",
              val_split: float = 0.15, test_split: float = 0.15, split_column: str | None = None, split_seed: int = 0,
              max_classes: int = 20, max_categories: int = 50, max_mb: float = 500) -> DataBundle:
    """Your own CSV file: numeric and categorical columns, the task inferred from the target column(s)."""
    if not path or not target:
        raise DlrunError("dataset=csv needs the file and its target column(s): dataset.path=FILE dataset.target=COLUMN.")
    for key, value, allowed in (("encoding", encoding, ("onehot", "index")), ("missing", missing, ("mean", "drop", "error")),
                                ("target_kind", target_kind, TARGET_KINDS)):
        if value not in allowed:
            raise DlrunError(f"dataset.{key}={value}: choose {' | '.join(allowed)}.")
    frame = read_table(path, delimiter, header, max_mb)
    targets = [target] if isinstance(target, str) else list(target)
    wanted = [*targets, *(features or []), *(categorical or []), *([split_column] if split_column else [])]
    absent = [c for c in wanted if c not in frame.columns]
    if absent:
        raise DlrunError(f"{frame.attrs['file']} has no column {', '.join(map(repr, absent))}; its columns: "
                         f"{', '.join(frame.columns)}.")
    columns = list(features) if features else [c for c in frame.columns if c not in targets and c != split_column]
    if not columns:
        raise DlrunError(f"{frame.attrs['file']} has no feature columns besides the target.")
    notes, n = [], len(frame)
    frame = frame[frame[targets].notna().all(axis=1)]
    if len(frame) < n:
        notes.append(f"{n - len(frame)} row(s) without a target dropped")
    if missing == "drop":
        kept = frame[frame[columns].notna().all(axis=1)]
        if len(kept) < len(frame):
            notes.append(f"{len(frame) - len(kept)} row(s) with a missing value dropped (dataset.missing=drop)")
        frame = kept
    if frame.empty:
        raise DlrunError(f"{path}: no rows left to train on.")
    specs = column_kinds(frame, columns, categorical, max_categories)
    y, task, outputs, classes, strata = read_targets(frame, targets, target_kind, max_classes)
    tr, va, te = split_indices(frame, split_column, strata, [1 - val_split - test_split, val_split, test_split],
                               split_seed)
    for spec in specs:  # a missing number is filled with the training split's mean
        if spec["kind"] == "numeric":
            spec["fill"] = float(np.nan_to_num(_numbers(frame, spec["name"]).iloc[tr.numpy()].mean()))
    x = torch.from_numpy(encode(frame, specs, encoding, missing))
    mean, std = standardise_stats(x[tr], 1.0) if len(tr) else ([0.0] * x.shape[1], [1.0] * x.shape[1])
    names = feature_names(specs, encoding)
    for i in range(x.shape[1]):  # categories stay 0/1 (or codes); a constant column is left as it is
        if i in names["categorical"] or std[i] < 1e-6:
            mean[i], std[i] = 0.0, 1.0
    target_scale = None
    if classes is None:  # values: standardised for training; metrics and predictions in the file's units
        mu, sd = y[tr].mean(0), y[tr].std(0).nan_to_num(1.0).clamp_min(1e-12)
        y, target_scale = (y - mu) / sd, (mu.tolist(), sd.tolist())
    splits = [Split(x[i], y[i]) for i in (tr, va, te)]
    table = {"columns": specs, "encoding": encoding, "missing": missing, "targets": targets}
    return DataBundle(*splits, input_shape=(x.shape[1],), num_outputs=outputs, task=task, mean=mean, std=std, classes=classes,
                      features=names, table=table, target_scale=target_scale, notes=notes)
