"""Predictions out: a table on the terminal, or a file by its suffix: .csv, .jsonl (.json), .npy (the raw
outputs), .png (a grid of images, for models that output images)."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import torch

from dlrun.errors import DlrunError
from dlrun.train.checkpoint import atomic_write

SUFFIXES = (".csv", ".jsonl", ".json", ".npy", ".png")


def check_out(path: Path | None) -> None:
    """Refuse an --out whose suffix is not one of SUFFIXES before any work."""
    if path is not None and path.suffix.lower() not in SUFFIXES:
        raise DlrunError(f"--out {path}: the suffix says the format; use {', '.join(SUFFIXES)}.")


def flat(pred: dict) -> dict:
    """A prediction as one CSV row: lists of numbers joined, the top classes as 'name:probability'; several
    targets' predictions as columns TARGET.KEY."""
    row = {}
    for key, value in pred.items():
        if key == "outputs":
            row.update({f"{name}.{k}": v for name, p in value.items() for k, v in flat(p).items()})
        elif key == "top":
            row[key] = " ".join(f"{t['class']}:{t['probability']:.4g}" for t in value)
        elif isinstance(value, dict):  # counts by name (a mask's pixels per class): a column each
            row.update({f"{key}.{k}": v for k, v in value.items()})
        elif isinstance(value, list):
            row[key] = " ".join(f"{v:.6g}" if isinstance(v, float) else str(v) for v in np.ravel(value).tolist())
        else:
            row[key] = value
    return row


def write(path: Path, names: list[str], preds: list[dict], outputs: torch.Tensor, image_shape: tuple | None) -> None:
    """Write the predictions (or the raw outputs) to `path`, by its suffix, atomically."""
    suffix = path.suffix.lower()
    if suffix == ".npy":
        buf = io.BytesIO()
        np.save(buf, outputs.numpy())
        atomic_write(path, lambda f: f.write(buf.getvalue()), durable=False)
    elif suffix == ".png":
        if image_shape is None:
            raise DlrunError(f"--out {path}: this model does not output images; write .csv, .jsonl or .npy.")
        from dlrun.plotter import draw_images

        rows = outputs.view(-1, *image_shape)[:64].tolist()
        draw_images([rows[i:i + 8] for i in range(0, len(rows), 8)], [""] * ((len(rows) + 7) // 8), str(path),
                    f"{len(rows)} outputs")
    elif suffix == ".csv":
        rows = [{"input": n, **flat(p)} for n, p in zip(names, preds)]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
        writer.writeheader()
        writer.writerows(rows)
        atomic_write(path, lambda f: f.write(buf.getvalue().encode()), durable=False)
    else:
        text = "".join(json.dumps({"input": n, **p}) + "\n" for n, p in zip(names, preds))
        atomic_write(path, lambda f: f.write(text.encode()), durable=False)


def short(pred: dict) -> str:
    """A prediction in a few words, for the terminal."""
    if "outputs" in pred:  # several targets: each one's own
        return "; ".join(f"{name}: {short(p)}" for name, p in pred["outputs"].items())
    if "class" in pred:
        return f"{pred['class']} ({pred['probability']:.3f})"
    if "labels" in pred:
        return ", ".join(map(str, pred["labels"])) or "(no label)"
    if "value" in pred:
        v = pred["value"]
        return f"{v:.6g}" if isinstance(v, float) else " ".join(f"{x:.4g}" for x in v)
    if "next" in pred:
        return f"{pred['next']!r} ({pred['probability']:.3f})"
    if "translation" in pred:
        return pred["translation"]
    if "boxes" in pred:  # detections: class and score of each
        return ", ".join(f"{b['class']} ({b['score']:.2f})" for b in pred["boxes"]) or "(no box)"
    if "pixels" in pred:  # a mask: its classes by pixel count
        return ", ".join(f"{name} {n}" for name, n in sorted(pred["pixels"].items(), key=lambda kv: -kv[1]) if n)
    return f"{len(np.ravel(pred.get('output', [])))} values"
