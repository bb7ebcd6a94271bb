"""New inputs for a trained model, read from files as raw inputs in the data's own units (what the data
source gives, before any normalisation): `.npy`/`.npz` arrays, CSV rows, image files or a folder of them.
A bad input is a one-line error naming it and what was expected."""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np
import torch

from dlrun.data.image_folder import IMAGE_SUFFIXES, load_image
from dlrun.errors import DlrunError
from dlrun.tasks.base import is_image


def read_inputs(paths: list[str], meta: dict) -> tuple[torch.Tensor, list[str]]:
    """(raw inputs, one name per input) from files and folders, for a model described by `meta`."""
    batches, names = [], []
    for p in map(Path, paths):
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise DlrunError(f"{p} holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))}).")
            batches.append(torch.stack([read_image(f, meta) for f in files]))
            names += [str(f) for f in files]
            continue
        if not p.is_file():
            raise DlrunError(f"{p}: no such file or folder.")
        suffix = p.suffix.lower()
        if suffix in IMAGE_SUFFIXES:
            batches.append(read_image(p, meta)[None])
            names.append(str(p))
        elif suffix in (".npy", ".npz"):
            x = read_array(p, meta)
            batches.append(x)
            names += [f"{p}[{i}]" for i in range(len(x))]
        elif suffix in (".csv", ".tsv", ".txt") and meta.get("table"):  # a table's rows, columns matched by name
            from dlrun.data.tabular import read_rows as read_table_rows

            x, row_names = read_table_rows(p, meta)
            batches.append(x)
            names += row_names
        elif suffix in (".csv", ".tsv", ".txt") and not meta["tokens"]:
            x = read_rows(p, meta)
            batches.append(x)
            names += [f"{p}:{i + 1}" for i in range(len(x))]
        else:
            raise DlrunError(f"{p}: cannot read a {suffix or 'suffix-less'} file as inputs; give .npy/.npz arrays, "
                             f"CSV rows or images ({', '.join(sorted(IMAGE_SUFFIXES))}).")
    if not batches:
        raise DlrunError("no inputs: give files or folders, or --split test|val for the run's own data.")
    dtypes = {b.dtype for b in batches}
    return torch.cat([b.to(torch.float32) for b in batches] if len(dtypes) > 1 else batches), names


def read_array(path: Path, meta: dict) -> torch.Tensor:
    """An array of inputs (N, *input_shape), or one input (*input_shape)."""
    try:
        loaded = np.load(path, allow_pickle=False)  # never a pickle: a file cannot run code
    except (OSError, ValueError, EOFError) as exc:
        raise DlrunError(f"{path} cannot be read as a NumPy array ({exc}).") from None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        keys = list(loaded.files)
        key = "x" if "x" in keys else keys[0] if len(keys) == 1 else None
        if key is None:
            raise DlrunError(f"{path} holds arrays {keys}; name the inputs 'x'.")
        loaded = loaded[key]
    shape = tuple(meta["input_shape"])
    if tuple(loaded.shape) == shape:
        loaded = loaded[None]
    if tuple(loaded.shape[1:]) != shape:
        raise DlrunError(f"{path} holds an array of shape {tuple(loaded.shape)}; this model takes inputs of shape "
                         f"{shape} (or a batch of them, (N, {', '.join(map(str, shape))})).")
    if loaded.dtype.kind not in "uif":
        raise DlrunError(f"{path} holds {loaded.dtype} values; give numbers.")
    return torch.from_numpy(np.ascontiguousarray(loaded))


def read_rows(path: Path, meta: dict) -> torch.Tensor:
    """CSV rows of numbers, each one input's values in order (a header row is skipped)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DlrunError(f"{path} cannot be read as text ({exc}).") from None
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t ")
    except csv.Error:
        dialect = csv.excel
    rows = [r for r in csv.reader(io.StringIO(text), dialect) if any(c.strip() for c in r)]
    if rows and not all(_number(c) for c in rows[0]):
        rows = rows[1:]  # a header
    if not rows:
        raise DlrunError(f"{path} holds no rows of numbers.")
    width = math.prod(meta["input_shape"])
    for i, row in enumerate(rows, start=1):
        if len(row) != width:
            raise DlrunError(f"{path}, row {i}: {len(row)} values; this model takes {width} per input "
                             f"(shape {tuple(meta['input_shape'])}).")
        bad = next((c for c in row if not _number(c)), None)
        if bad is not None:
            raise DlrunError(f"{path}, row {i}: {bad!r} is not a number.")
    values = torch.tensor([[float(c) for c in row] for row in rows], dtype=torch.float32)
    if not torch.isfinite(values).all():
        raise DlrunError(f"{path} holds NaN or infinite values.")
    return values.view(len(rows), *meta["input_shape"])


def _number(cell: str) -> bool:
    try:
        float(cell)
        return True
    except ValueError:
        return False


def read_image(path, meta: dict, name: str | None = None) -> torch.Tensor:
    """An image file as one raw input, prepared by the code that prepared `dataset=image_folder`'s training images
    (converted to the model's channels, resized), then in the data's raw range (0..255 for uint8 images; 0..scale
    for data stored otherwise, e.g. digits' 0..16). `path` may be a binary file object (an image sent to
    `dlrun serve`), called `name` in errors."""
    shape, name = tuple(meta["input_shape"]), name or path
    if not is_image(shape):
        raise DlrunError(f"{name}: this model takes inputs of shape {shape}, not images.")
    try:
        pixels = load_image(path, *shape)
    except Exception as exc:  # noqa: BLE001 - PIL raises OSError, ValueError, SyntaxError, bomb errors...
        raise DlrunError(f"{name} cannot be read as an image ({type(exc).__name__}: {exc}).") from None
    scale = float(meta["scale"])
    return pixels if scale == 255.0 else pixels.float() * (scale / 255.0)


def encode_text(text: str, meta: dict) -> torch.Tensor:
    """A prompt as the token ids of a character model's vocabulary; an unknown character is named."""
    lookup = {c: i for i, c in enumerate(meta["classes"] or [])}
    unknown = sorted({c for c in text if c not in lookup})
    if unknown:
        raise DlrunError(f"the prompt has characters the model never saw: {''.join(unknown)!r}.")
    if not text:
        raise DlrunError("the prompt is empty.")
    return torch.tensor([lookup[c] for c in text], dtype=torch.long)
