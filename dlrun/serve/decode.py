"""A request's JSON body as a model's raw inputs, checked before it joins a batch (so a bad input fails only its own
request). The body is {"inputs": ..., "top_k": 3, "length": N}; "inputs" is one input or a list of them:
- numbers, nested to the model's input shape (or a batch of such): raw inputs in the data's own units, as
  `dlrun predict` reads them from .npy files, checked by the same `Predictor.check`;
- for image models, base64 strings (PNG, JPEG, ... or a data: URL), prepared by predict's `read_image`;
- for models trained on a CSV table, objects {column: value} (or a list of them), encoded by the table code that
  prepared the training rows (`dlrun.data.tabular.encode` with the checkpoint's column description);
- for text models (model=charlm, word2vec), strings: a prompt to continue, or words whose neighbours to name, as
  `dlrun predict --text` does."""
from __future__ import annotations

import base64
import binascii
import io
import json
from dataclasses import dataclass

import numpy as np
import torch

from dlrun.errors import DlrunError
from dlrun.serve.errors import ServeError
from dlrun.tasks.base import is_image

KEYS = {"inputs", "top_k", "length"}


@dataclass
class Inputs:
    """One request's inputs, ready for a batch: raw inputs (checked) or text prompts."""

    raw: torch.Tensor | None = None
    prompts: list[str] | None = None
    top_k: int = 3
    length: int | None = None

    @property
    def size(self) -> int:
        return len(self.raw) if self.raw is not None else len(self.prompts or [])


def parse_json(body: bytes):
    """The body as JSON; malformed JSON is a 400."""
    if not body.strip():
        raise ServeError(400, "json", 'the request has no body; send JSON such as {"inputs": [...]}.')
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, bad UTF-8, nesting too deep
        raise ServeError(400, "json", f"the body is not valid JSON ({str(exc).splitlines()[0][:200]}).") from None


def decode_request(payload, predictor) -> Inputs:
    """{"inputs": ...} as checked inputs for `predictor`, or a ServeError saying what the model takes."""
    if not isinstance(payload, dict) or "inputs" not in payload:
        raise ServeError(400, "json", 'the body must be a JSON object with the inputs: {"inputs": [...]}.')
    unknown = sorted(set(payload) - KEYS)
    if unknown:
        raise ServeError(400, "json", f"unknown key(s) {', '.join(map(repr, unknown))}; the body takes "
                         f"{', '.join(sorted(KEYS))}.")
    top_k, length = payload.get("top_k", 3), payload.get("length")
    if not _count(top_k) or top_k < 1:
        raise ServeError(422, "options", f"top_k must be a positive integer; got {top_k!r}.")
    if length is not None and (not _count(length) or not 1 <= length <= 10_000):
        raise ServeError(422, "options", f"length must be an integer from 1 to 10000; got {length!r}.")
    inputs, meta = payload["inputs"], predictor.meta
    if isinstance(inputs, list) and not inputs:
        raise ServeError(422, "empty", "the inputs are an empty list; send one input or a list of them.")
    many = isinstance(inputs, list) and all(isinstance(v, type(inputs[0])) for v in inputs)
    first = inputs[0] if many else inputs
    if isinstance(first, str):
        items = inputs if many else [inputs]
        if is_image(predictor.input_shape):
            return Inputs(raw=_checked(torch.stack([image(s, meta, i) for i, s in enumerate(items)]), predictor),
                          top_k=top_k)
        if meta["tokens"]:
            if meta.get("classes") and not predictor.vocab and not meta.get("text"):  # a character model: its prompt, now
                for text in items:
                    _prompt(text, meta)
            return Inputs(prompts=list(items), top_k=top_k, length=length)
        raise ServeError(422, "dtype", f"strings are inputs of image and text models; this model takes numbers of "
                         f"shape {predictor.input_shape}" + (" or objects {column: value}." if meta.get("table") else "."))
    if isinstance(first, dict):
        if not meta.get("table"):
            raise ServeError(422, "dtype", f"objects {{column: value}} are inputs of models trained on a CSV table; this "
                             f"model takes numbers of shape {predictor.input_shape}.")
        return Inputs(raw=_checked(table_rows(inputs if many else [inputs], meta), predictor), top_k=top_k)
    return Inputs(raw=_checked(array(inputs, predictor.input_shape), predictor), top_k=top_k)


def array(inputs, shape: tuple) -> torch.Tensor:
    """Nested lists of numbers as a batch (N, *shape): one input of `shape`, or a list of them."""
    try:
        values = np.asarray(inputs)
    except (ValueError, TypeError, OverflowError):
        raise ServeError(422, "shape", "the inputs are not a rectangular array of numbers (lists of different "
                         "lengths).") from None
    if values.dtype.kind == "b":
        raise ServeError(422, "dtype", "the inputs are booleans; give numbers in the data's units.")
    if values.dtype.kind not in "iuf":
        what = "text" if values.dtype.kind == "U" else "values that are not numbers (or integers beyond 64 bits)"
        raise ServeError(422, "dtype", f"the inputs hold {what}; give numbers in the data's units.")
    if tuple(values.shape) == shape:
        values = values[None]
    if tuple(values.shape[1:]) != shape:
        what = " (channels, height, width)" if is_image(shape) else ""
        raise ServeError(422, "shape", f"inputs of shape {tuple(values.shape)}; this model takes one input of shape "
                         f"{shape}{what} or a list of them.")
    if values.dtype.kind == "f":
        values = values.astype(np.float32)
        if not np.isfinite(values).all():  # JSON's NaN and Infinity, or a number beyond float32
            raise ServeError(422, "not_finite", "the inputs hold NaN or infinite values (or numbers beyond float32).")
    return torch.from_numpy(values if values.dtype.kind == "f" else values.astype(np.int64))


def image(text: str, meta: dict, index: int) -> torch.Tensor:
    """A base64 image (or a data: URL) as one raw input, by `dlrun predict`'s `read_image`."""
    from dlrun.predict.inputs import read_image

    data = text.split(",", 1)[1] if text.startswith("data:") and "," in text else text
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ServeError(422, "image", f"input {index} is not base64 (an image model takes images as base64 "
                         "strings).") from None
    try:
        return read_image(io.BytesIO(raw), meta, name=f"input {index}")
    except DlrunError as exc:  # PIL names a file object by its address: cut it off
        message = str(exc)
        raise ServeError(422, "image", message.split(" <", 1)[0] + ")." if " <_io." in message else message) from None


def table_rows(rows: list, meta: dict) -> torch.Tensor:
    """Objects {column: value} as the encoded features the model reads, prepared like the training rows."""
    import pandas as pd

    from dlrun.data.tabular import encode

    if not all(isinstance(r, dict) for r in rows):
        raise ServeError(422, "table", "give every row as an object {column: value}.")
    cells = []
    for i, row in enumerate(rows, start=1):
        if any(isinstance(v, (dict, list)) for v in row.values()):
            raise ServeError(422, "table", f"row {i}: a value is an object or a list; give numbers or text.")
        cells.append({str(k): None if v is None else str(v).strip() for k, v in row.items()})
    frame = pd.DataFrame(cells, dtype=object)
    frame.attrs.update(file="the request", first_row=1)
    table = meta["table"]
    try:  # the same call `dlrun predict` makes on a CSV file's rows (dlrun.data.tabular.read_rows)
        x = encode(frame, table["columns"], table["encoding"], "mean" if table["missing"] == "mean" else "error")
    except DlrunError as exc:
        raise ServeError(422, "table", str(exc)) from None
    return torch.from_numpy(x)


def _checked(raw: torch.Tensor, predictor) -> torch.Tensor:
    """`Predictor.check`: the shape, dtype and finiteness `dlrun predict` demands."""
    try:
        return predictor.check(raw)
    except DlrunError as exc:
        raise ServeError(422, "input", str(exc)) from None


def _prompt(text: str, meta: dict) -> None:
    from dlrun.predict.inputs import encode_text

    try:
        encode_text(text, meta)
    except DlrunError as exc:
        raise ServeError(422, "text", str(exc)) from None


def _count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
