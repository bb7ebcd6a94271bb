"""Your own images: `dataset=image_folder dataset.root=DIR`, one folder per class (torchvision's ImageFolder layout),
or `train/`, `val/`, `test/` folders each holding the class folders (a missing `val/` or `test/` is split off the
training images by the fractions).

Every image is converted to `dataset.channels` (1: greyscale, 3: RGB; inferred: 1 when every image is greyscale)
and resized to `dataset.size` (inferred: the most common size) by `load_image`, the function `dlrun predict` uses
too, so a new image is prepared exactly as the training ones were. The images are held in memory as uint8 (4x less
than floats), normalised per batch with the training split's per-channel statistics. A file that is not an image
or cannot be decoded is skipped, counted and named in the log; training never stops for one.
"""
from __future__ import annotations

import collections
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch

from dlrun.data.bundle import DataBundle, Split, standardise_stats, stratified_split
from dlrun.data.cache import Destination, open_prepared, prepared_path
from dlrun.errors import DlrunError
from dlrun.registry import register_dataset

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
GREY_MODES = {"1", "L", "LA", "I", "I;16", "F"}
SPLIT_DIRS = ("train", "val", "test")


def load_image(path: Path, channels: int, height: int, width: int) -> torch.Tensor:
    """One image file as (channels, height, width) uint8: greyscale or RGB, resized bilinearly. A file that cannot
    be decoded raises OSError/ValueError (PIL's own), which the caller turns into a skip or a one-line error."""
    from PIL import Image

    with Image.open(path) as img:
        img.load()
        img = img.convert("L" if channels == 1 else "RGB")
        if img.size != (width, height):
            img = img.resize((width, height), Image.Resampling.BILINEAR)
    pixels = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy())
    return pixels[None] if channels == 1 else pixels.permute(2, 0, 1).contiguous()


def _decoded(order: list, sizes: list[int], shape: tuple, path: Path | None, top: Path):
    """The images of `order` (train, then val, then test files) decoded into one uint8 array, in memory or into the
    prepared file at `path` (reused when complete): (images, images kept per split, files that could not be decoded).
    A file that cannot be decoded is left out, so each split stays one contiguous block."""
    done = path.with_suffix(".json") if path is not None else None
    if done is not None and done.exists() and path.exists():
        record = json.loads(done.read_text())
        return open_prepared(path), record["counts"], record["skipped"]
    out, counts, bad, at = Destination((len(order), *shape), np.uint8, path), [0, 0, 0], [], 0
    bounds = np.cumsum(sizes)
    for i, (f, _, _) in enumerate(order):
        try:
            image = load_image(f, *shape)
        except Exception:  # noqa: BLE001 - PIL raises OSError, ValueError, SyntaxError, bomb errors...
            bad.append(str(f.relative_to(top)))
            continue
        out.put(np.array([at]), image.numpy()[None])
        counts[int(np.searchsorted(bounds, i, side="right"))] += 1
        at += 1
    x = out.finish()[:at]
    if done is not None:
        done.write_text(json.dumps({"counts": counts, "skipped": bad}))
    return x, counts, bad


def _files(folder: Path) -> tuple[dict[str, list[Path]], list[Path]]:
    """{class: image files} of a folder's class folders, and the files skipped for their suffix."""
    found, skipped = {}, []
    for cls in sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".")):
        files = sorted(f for f in cls.rglob("*") if f.is_file() and not f.name.startswith("."))
        found[cls.name] = [f for f in files if f.suffix.lower() in IMAGE_SUFFIXES]
        skipped += [f for f in files if f.suffix.lower() not in IMAGE_SUFFIXES]
    return found, skipped


def _probe(files: list[Path]) -> tuple[collections.Counter, bool]:
    """The images' sizes (height, width), counted, and whether all are greyscale: from their headers only."""
    from PIL import Image

    sizes, grey = collections.Counter(), True
    for f in files:
        try:
            with Image.open(f) as img:
                sizes[img.size[::-1]] += 1
                grey = grey and img.mode in GREY_MODES
        except (OSError, ValueError, Image.DecompressionBombError):
            continue  # counted as skipped when it is loaded
    return sizes, grey


@register_dataset("image_folder")
def image_folder(root: str | None = None, size: int | list[int] | None = None, channels: int | None = None,
                 val_split: float = 0.15, test_split: float = 0.15, split_seed: int = 0,
                 in_memory: bool = True) -> DataBundle:
    """Your own images, one folder per class (or train/val/test folders of class folders)."""
    if not root:
        raise DlrunError("dataset=image_folder needs its folder: dataset.root=DIR (one sub-folder per class).")
    top = Path(os.path.expanduser(str(root)))
    if not top.is_dir():
        raise DlrunError(f"dataset.root={root}: no such folder.")
    layout = {s: top / s for s in SPLIT_DIRS if (top / s).is_dir()}
    parts, skipped = {}, []
    for name, folder in (layout.items() if "train" in layout else [("all", top)]):
        parts[name], skip = _files(folder)
        skipped += skip
    classes = sorted(parts.get("train", parts.get("all")))
    for name, found in parts.items():
        extra = sorted(set(found) - set(classes))
        if extra:
            raise DlrunError(f"{top / name} has class folder(s) {', '.join(extra)} that {top / 'train'} lacks.")
    if len(classes) < 2:
        raise DlrunError(f"{top} holds {len(classes)} class folder(s) ({', '.join(classes) or 'none'}); a classifier "
                         "needs two or more: one sub-folder per class, holding its images.")
    every = [f for found in parts.values() for fs in found.values() for f in fs]
    if not every:
        raise DlrunError(f"{top}: its class folders hold no image files ({', '.join(sorted(IMAGE_SUFFIXES))}).")
    sizes, grey = _probe(every)
    if not sizes:
        raise DlrunError(f"{top}: none of its {len(every)} image files can be read.")
    height, width = (size, size) if isinstance(size, int) else tuple(size) if size else sizes.most_common(1)[0][0]
    channels = channels or (1 if grey else 3)
    if channels not in (1, 3) or min(height, width) < 1:
        raise DlrunError(f"dataset.channels={channels}, dataset.size={size}: channels is 1 or 3, sizes positive.")
    files = [(f, k, name) for name, found in parts.items() for k, cls in enumerate(classes) for f in found.get(cls, [])]
    y = torch.tensor([k for _, k, _ in files])
    where = np.array([name for _, _, name in files])
    fixed = {s: torch.from_numpy(np.nonzero(where == s)[0]) for s in SPLIT_DIRS}
    if "train" in layout:  # the given folders, and what is missing split off the training images
        tr = fixed["train"]
        want = [0.0 if "val" in layout else val_split, 0.0 if "test" in layout else test_split]
        keep, va, te = (tr[i] for i in stratified_split(y[tr], [1 - sum(want), *want], split_seed))
        tr, va, te = keep, fixed["val"] if "val" in layout else va, fixed["test"] if "test" in layout else te
    else:
        tr, va, te = stratified_split(y, [1 - val_split - test_split, val_split, test_split], split_seed)
    order = [files[i] for part in (tr, va, te) for i in part.tolist()]
    listing = [(str(f.relative_to(top)), f.stat().st_size, f.stat().st_mtime_ns) for f, _, _ in order]
    path = None if in_memory else prepared_path(top, {"size": [channels, height, width], "files": hashlib.sha1(
        repr(listing).encode()).hexdigest()}, "images")
    x, counts, bad = _decoded(order, [len(tr), len(va), len(te)], (channels, height, width), path, top)
    skipped += [top / b for b in bad]
    bad = set(bad)
    labels = torch.tensor([k for f, k, _ in order if str(f.relative_to(top)) not in bad])
    if not len(labels):
        raise DlrunError(f"{top}: none of its image files can be decoded.")
    notes = [f"{len(labels)} images of {len(classes)} classes as {channels}x{height}x{width}"
             + (f" (sizes found: {', '.join(f'{h}x{w}' for h, w in list(sizes)[:4])})" if len(sizes) > 1 else "")
             + ("" if in_memory else f", prepared in {path}")]
    if skipped:
        notes.append(f"{len(skipped)} file(s) skipped, not images or unreadable: "
                     + ", ".join(str(f.relative_to(top)) for f in skipped[:20]) + (" ..." if len(skipped) > 20 else ""))
    cut = np.cumsum([0, *counts])
    tr, va, te = (slice(int(cut[i]), int(cut[i + 1])) for i in range(3))
    mean, std = standardise_stats(x[tr], 255.0)
    binary = len(classes) == 2
    target = (lambda t: t.float().unsqueeze(1)) if binary else (lambda t: t)
    return DataBundle(*(Split(x[i], target(labels[i])) for i in (tr, va, te)), input_shape=(channels, height, width),
                      num_outputs=1 if binary else len(classes), task="binary" if binary else "multiclass",
                      scale=255.0, mean=mean, std=std, classes=classes, notes=notes)
