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
  regression with several outputs, several columns of different kinds one head each (multioutput). `dataset.target_kind=classes|values|labels` forces one reading.
- Splits: `dataset.split_column` (values train, val, test), else fractions, stratified by class, seeded.
Everything needed to prepare new rows the same way (columns, categories, fill values, class names, the target's
scale) goes into the checkpoint, so `dlrun predict RUN rows.csv` matches columns by name and ignores the rest.
"""
from __future__ import annotations

import csv
import hashlib
import os
import stat
from pathlib import Path

import numpy as np
import torch

from dlrun.data.bundle import DataBundle, Split, standardise_stats, stratified_split
from dlrun.data.cache import Destination, open_prepared, prepared_path
from dlrun.errors import DlrunError
from dlrun.registry import register_dataset

MISSING = "(missing)"  # the category a missing value becomes under missing=mean
SPLITS = {"train": 0, "training": 0, "val": 1, "valid": 1, "validation": 1, "dev": 1, "test": 2}
TARGET_KINDS = ("auto", "classes", "values", "labels")


# ---- reading -----------------------------------------------------------------------------------------------
def read_table(path: str | Path, delimiter: str | None = None, header: bool | str = "auto",
               max_mb: float | None = 500, chunk_rows: int | None = None):
    """The file as a DataFrame of strings (missing cells NaN; `.attrs`: the file and the line of row 0), or, with
    `chunk_rows`, an iterator of such frames whose row labels run on across chunks (no size limit then)."""
    import pandas as pd

    file, delimiter, header = _sniff(path, delimiter, header, max_mb)
    try:
        # pandas' C parser reads numbers as numbers (fast, compact); a column with any word stays text
        reader = pd.read_csv(file, sep=delimiter, header=0 if header else None, encoding="utf-8-sig",
                             skipinitialspace=True, skip_blank_lines=True, chunksize=chunk_rows)
        if chunk_rows is None:
            return _tidy(reader, file, header)
        return (_tidy(chunk, file, header) for chunk in _parsed(reader, file))
    except pd.errors.EmptyDataError:
        raise DlrunError(f"{file} holds no rows.") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise DlrunError(f"{file} cannot be read as CSV: {str(exc).strip().splitlines()[-1]}") from None


def _parsed(reader, file):
    """A chunked reader's frames, its parse errors as one line (they surface while iterating)."""
    import pandas as pd

    try:
        yield from reader
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise DlrunError(f"{file} cannot be read as CSV: {str(exc).strip().splitlines()[-1]}") from None


def _sniff(path, delimiter, header, max_mb) -> tuple[Path, str, bool]:
    """The file (a regular file, within `max_mb` unless None), its delimiter and whether it has a header row."""
    file = Path(os.path.expanduser(str(path)))
    try:
        info = file.stat()
    except OSError as exc:
        raise DlrunError(f"dataset.path={path}: cannot read it ({exc.strerror or exc}).") from None
    if not stat.S_ISREG(info.st_mode):
        raise DlrunError(f"{file} is not a regular file; give a CSV file.")
    if max_mb is not None and info.st_size > max_mb * 1e6:
        raise DlrunError(f"{file} has {info.st_size / 1e6:.0f} MB, over dataset.max_mb={max_mb:g}: the table is held in "
                         "memory. Raise dataset.max_mb, or stream it from disk with dataset.in_memory=false.")
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
    return file, delimiter, bool(header)


def _tidy(frame, file: Path, header: bool):
    import pandas as pd

    frame.columns = [str(c).strip() for c in frame.columns]
    for name in frame.columns:
        if not pd.api.types.is_numeric_dtype(frame[name]):
            frame[name] = frame[name].astype("object").where(frame[name].isna(), frame[name].astype(str).str.strip())
    frame.attrs["first_row"] = 2 if header else 1
    frame.attrs["file"] = str(file)
    return frame


def as_text(column):
    """A column's values as the strings categories are named by (numbers without a trailing .0), NaN kept."""
    import pandas as pd

    if pd.api.types.is_numeric_dtype(column):
        return column.map(lambda v: f"{v:g}", na_action="ignore").astype("object")
    return column


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
class ColumnProfile:
    """What one pass over a column's chunks learns: how many values are words, its first word, its distinct values
    (up to a bound), whether it misses values; `spec` then decides numeric or categorical."""

    def __init__(self, name: str, limit: int):
        self.name, self.limit = name, limit
        self.values = self.words = 0
        self.first_word: tuple[str, str] | None = None
        self.distinct: set[str] = set()
        self.missing = False

    def add(self, frame) -> None:
        import pandas as pd

        column = frame[self.name]
        present = column.dropna()
        self.values += len(present)
        self.missing = self.missing or len(present) < len(column)
        if not pd.api.types.is_numeric_dtype(column):  # text: count the words among any numbers
            words = pd.to_numeric(present, errors="coerce").isna()
            self.words += int(words.sum())
            if self.first_word is None and words.any():
                i = words.idxmax()
                self.first_word = (_row(frame, i), present[i])
        if len(self.distinct) <= self.limit:  # enough to name the categories, or to know there are too many
            values = present.drop_duplicates().iloc[:self.limit + 1]
            self.distinct.update(as_text(values).tolist())

    def spec(self, categorical: list[str] | None) -> dict:
        named = categorical is not None and self.name in categorical
        if not named and (categorical is not None or not self.words) or categorical is None and self.words < self.values / 2:
            if self.words:  # a word among numbers: a typo, not a category
                row, value = self.first_word
                raise DlrunError(f"{row}: {value!r} in column '{self.name}' is not a number, and the column's other "
                                 "values are numbers. Fix the value, or list the column in dataset.categorical.")
            return {"name": self.name, "kind": "numeric"}
        cats = sorted(self.distinct | ({MISSING} if self.missing else set()))
        if len(cats) > self.limit:
            raise DlrunError(f"column '{self.name}' has more than {self.limit} distinct values (dataset.max_categories): "
                             "it looks like an identifier or free text. Leave it out with dataset.features=[...], or "
                             "raise dataset.max_categories.")
        return {"name": self.name, "kind": "categorical", "categories": cats}


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
        column = as_text(column)
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
    """(targets, task, number of outputs, class names, codes to stratify by or None, heads or None) from the target
    columns, read as `kind`: classes, values, labels, or auto (classes for text or few integers, else values;
    several 0/1 columns: labels). Several columns of different kinds are heads: one output group each."""
    if len(targets) == 1:
        if kind == "labels":
            raise DlrunError("dataset.target_kind=labels takes several 0/1 target columns (dataset.target=[a,b,...]).")
        return (*_one_target(frame, targets[0], kind, max_classes), None)
    if kind == "classes":
        raise DlrunError(f"dataset.target_kind=classes takes one target column; dataset.target names {len(targets)} "
                         "(leave target_kind=auto to read each as classes or values).")
    if kind != "values":
        values = np.stack([_numbers(frame, t, strict=False).to_numpy() for t in targets], axis=1)
        if np.isin(values, (0.0, 1.0)).all():
            return torch.tensor(values, dtype=torch.float32), "multilabel", len(targets), list(targets), None, None
        if kind == "labels":
            raise DlrunError(f"dataset.target_kind=labels takes 0/1 values; columns {', '.join(targets)} hold others.")
    read = [_one_target(frame, t, "values" if kind == "values" else "auto", max_classes) for t in targets]
    if all(r[3] is None for r in read):  # values only: one regression with several outputs
        return torch.cat([r[0] for r in read], 1), "regression", len(targets), None, None, None
    heads = [{"name": t, "task": task, "width": width, "classes": names, "scale": None}
             for t, (_, task, width, names, _) in zip(targets, read)]
    strata = next(r[4] for r in read if r[4] is not None)  # stratified by the first classes column
    y = torch.stack([r[0].flatten().float() for r in read], 1)  # class ids, 0/1 or values, a column each
    return y, "multioutput", sum(h["width"] for h in heads), None, strata, heads


def _one_target(frame, target: str, kind: str, max_classes: int):
    """(targets, task, outputs, class names, codes to stratify by) of one target column."""
    column = frame[target]
    numbers = _numbers(frame, target, strict=False)
    words = numbers.isna().any()
    few_integers = not words and bool((numbers == numbers.round()).all()) and numbers.nunique() <= max_classes
    if kind == "values" or kind == "auto" and not words and not few_integers:
        if words:
            _numbers(frame, target)  # refused, naming the row
        return torch.tensor(numbers.to_numpy()[:, None], dtype=torch.float32), "regression", 1, None, None
    if words:
        names = sorted(column.unique().tolist())
    else:  # numbers as classes, in numeric order, named as they are written without a trailing .0
        names = [f"{v:g}" for v in sorted(numbers.unique())]
        column = numbers.map(lambda v: f"{v:g}")
    if len(names) < 2:
        raise DlrunError(f"target column '{target}' has a single class ({names[0]!r}); a classifier needs two or "
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
              max_classes: int = 20, max_categories: int = 50, max_mb: float = 500, in_memory: bool = True,
              chunk_rows: int = 100_000) -> DataBundle:
    """Your own CSV file: numeric and categorical columns, the task inferred from the target column(s)."""
    if not path or not target:
        raise DlrunError("dataset=csv needs the file and its target column(s): dataset.path=FILE dataset.target=COLUMN.")
    for key, value, allowed in (("encoding", encoding, ("onehot", "index")), ("missing", missing, ("mean", "drop", "error")),
                                ("target_kind", target_kind, TARGET_KINDS)):
        if value not in allowed:
            raise DlrunError(f"dataset.{key}={value}: choose {' | '.join(allowed)}.")
    if in_memory:  # one read; the passes below go over the one frame
        frame = read_table(path, delimiter, header, max_mb)
        chunks = lambda: [frame]  # noqa: E731
    else:  # each pass reads the file again, chunk by chunk: memory holds a chunk and the targets, not the table
        chunks = lambda: read_table(path, delimiter, header, None, chunk_rows)  # noqa: E731
    targets = [str(t) for t in ([target] if isinstance(target, (str, int)) else target)]  # headerless: 0, 1, ...
    features, categorical = ([str(c) for c in v] if v is not None else None for v in (features, categorical))
    split_column = str(split_column) if split_column is not None else None
    first = next(iter(chunks()))
    wanted = [*targets, *(features or []), *(categorical or []), *([split_column] if split_column else [])]
    absent = [c for c in wanted if c not in first.columns]
    if absent:
        raise DlrunError(f"{first.attrs['file']} has no column {', '.join(map(repr, absent))}; its columns: "
                         f"{', '.join(first.columns)}.")
    columns = list(features) if features else [c for c in first.columns if c not in targets and c != split_column]
    if not columns:
        raise DlrunError(f"{first.attrs['file']} has no feature columns besides the target.")

    # pass 1: which rows stay, the columns' kinds, and the targets (and split column) of the rows that stay
    keep = lambda f: f[f[targets].notna().all(axis=1) & (f[columns].notna().all(axis=1) if missing == "drop" else True)]  # noqa: E731
    profiles = [ColumnProfile(c, max_categories) for c in columns]
    kept, rows = [], 0
    for chunk in chunks():
        rows += len(chunk)
        chunk = keep(chunk)
        for profile in profiles:
            profile.add(chunk)
        kept.append(chunk[[*targets, *([split_column] if split_column else [])]])
    import pandas as pd

    labels = pd.concat(kept)
    labels.attrs = first.attrs
    notes = [f"{rows - len(labels)} row(s) dropped: without a target"
             + (" or with a missing value (dataset.missing=drop)" if missing == "drop" else "")] if len(labels) < rows else []
    if labels.empty:
        raise DlrunError(f"{path}: no rows left to train on.")
    specs = [p.spec(categorical) for p in profiles]
    y, task, outputs, classes, strata, heads = read_targets(labels, targets, target_kind, max_classes)
    tr, va, te = split_indices(labels, split_column, strata, [1 - val_split - test_split, val_split, test_split],
                               split_seed)
    order = torch.cat([tr, va, te]).numpy()
    position = np.empty(len(order), np.int64)
    position[order] = np.arange(len(order))  # where each kept row goes: training rows first, then val, then test

    # pass 2: a missing number is filled with the training rows' mean
    numeric = [s for s in specs if s["kind"] == "numeric"]
    sums, counts, at = np.zeros(len(numeric)), np.zeros(len(numeric)), 0
    for chunk in chunks():
        chunk = keep(chunk)
        training = position[at:at + len(chunk)] < len(tr)
        at += len(chunk)
        values = np.stack([_numbers(chunk, s["name"]).to_numpy()[training] for s in numeric], 1) if numeric else None
        if values is not None:
            sums, counts = sums + np.nansum(values, 0), counts + np.isfinite(values).sum(0)
    for spec, total, n in zip(numeric, sums, counts):
        spec["fill"] = float(total / n) if n else 0.0

    # pass 3: the features, encoded, in split order (a file when streaming, prepared once per data and settings)
    names = feature_names(specs, encoding)
    width = max((i + 1 for idx in names.values() for i in idx), default=0)
    x = _encoded(chunks, keep, specs, encoding, missing, position, width, None if in_memory else prepared_path(
        Path(os.path.expanduser(str(path))), {"columns": specs, "encoding": encoding, "missing": missing,
                                              "order": hashlib.sha1(order.tobytes()).hexdigest()}, "csv"))
    y = y[torch.from_numpy(order)]
    cut = (len(tr), len(tr) + len(va))
    mean, std = standardise_stats(x[:cut[0]], 1.0) if len(tr) else ([0.0] * width, [1.0] * width)
    for i in range(width):  # categories stay 0/1 (or codes); a constant column is left as it is
        if i in names["categorical"] or std[i] < 1e-6:
            mean[i], std[i] = 0.0, 1.0
    target_scale = None
    if classes is None and heads is None:  # values: standardised for training; reported in the file's units
        mu, sd = y[:cut[0]].mean(0), y[:cut[0]].std(0).nan_to_num(1.0).clamp_min(1e-12)
        y, target_scale = (y - mu) / sd, (mu.tolist(), sd.tolist())
    for i, head in enumerate(heads or []):
        if head["classes"] is None:  # a value head, standardised the same way
            mu, sd = y[:cut[0], i].mean(), y[:cut[0], i].std().nan_to_num(1.0).clamp_min(1e-12)
            y[:, i], head["scale"] = (y[:, i] - mu) / sd, ([mu.item()], [sd.item()])
    splits = [Split(x[a:b], y[a:b]) for a, b in ((0, cut[0]), (cut[0], cut[1]), (cut[1], len(y)))]
    table = {"columns": specs, "encoding": encoding, "missing": missing, "targets": targets}
    return DataBundle(*splits, input_shape=(width,), num_outputs=outputs, task=task, mean=mean, std=std, classes=classes,
                      features=names, table=table, target_scale=target_scale, heads=heads, notes=notes)


def _encoded(chunks, keep, specs, encoding, missing, position, width, path: Path | None) -> torch.Tensor:
    """Every kept row encoded, at its position: in memory (`path` None), or into the prepared file at `path`
    (opened as it is when an earlier run with the same data and settings wrote it)."""
    if path is not None and path.exists():
        return open_prepared(path)
    out, at = Destination((len(position), width), np.float32, path), 0
    for chunk in chunks():
        chunk = keep(chunk)
        out.put(position[at:at + len(chunk)], encode(chunk, specs, encoding, missing))
        at += len(chunk)
    return out.finish()
