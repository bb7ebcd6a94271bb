"""Your own images with dense targets: `dataset=dense_folder dataset.root=DIR`, where DIR holds

    images/   the images (any format `dataset=image_folder` reads)
    masks/    a mask per image, same stem, PNG: each pixel's class id (0 background, 1..C the classes in order)
    labels/   a YOLO text file per image, same stem: a line `class cx cy w h` per object (class 0..C-1, the box's
              centre and size as fractions of the image); an image without one has no objects

`dataset.classes` names the C classes (or gives their count; null: as many as the files use). With masks/, y is
the masks (task=segmentation); the boxes of labels/ go to `targets["detection"]` as [class, cx, cy, w, h] rows,
padded with class -1, the layout dataset=canvas gives. Images are prepared by `load_image` (converted to
`dataset.channels`, resized to `dataset.size`, as `dlrun predict` prepares new ones); masks are resized with the
nearest pixel, so their class ids stay class ids. A file that breaks these rules stops the run naming it.
"""
from __future__ import annotations

import collections
import os
from pathlib import Path

import numpy as np
import torch

from dlrun.data.augment import IMAGE_ONLY, parse_augment
from dlrun.data.bundle import DataBundle, Split, standardise_stats, stratified_split
from dlrun.data.image_folder import GREY_MODES, IMAGE_SUFFIXES, load_image
from dlrun.errors import DlrunError
from dlrun.registry import register_dataset

MASK_MODES = {"L", "P", "I", "I;16", "1"}  # one channel of class ids
BOX_TOLERANCE = 0.01  # a box may reach this far (a fraction of the image) past its edge: rounding in label tools


def read_mask(path: Path, size: tuple[int, int], image_size: tuple[int, int], classes: int | None) -> np.ndarray:
    """A mask file as (height, width) int64 class ids at `size` (nearest pixel); a mask that is not one channel,
    not its image's size, or holds an id beyond `classes` is a DlrunError naming it."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()
            if img.mode not in MASK_MODES:
                raise DlrunError(f"{path}: a {img.mode} mask; a mask holds one class id per pixel, in one channel "
                                 "(an 8-bit greyscale or palette PNG).")
            if img.size[::-1] != image_size:
                raise DlrunError(f"{path}: the mask is {img.size[0]}x{img.size[1]}, its image "
                                 f"{image_size[1]}x{image_size[0]}; give each image a mask of its own size.")
            if img.size[::-1] != size:
                img = img.resize(size[::-1], Image.Resampling.NEAREST)
            ids = np.asarray(img, dtype=np.int64)
    except (OSError, ValueError) as exc:
        raise DlrunError(f"{path} cannot be read as a mask ({type(exc).__name__}: {exc}).") from None
    if classes is not None and ids.max(initial=0) > classes:
        raise DlrunError(f"{path}: class id {int(ids.max())} in the mask, but there are {classes} classes (ids 1.."
                         f"{classes}, 0 background); fix the mask or dataset.classes.")
    return ids


def read_labels(path: Path, classes: int | None) -> list[list[float]]:
    """A YOLO label file's boxes as [class, cx, cy, w, h] rows; a line that is not five numbers, a class beyond
    `classes` or a box outside the image is a DlrunError naming the file and line."""
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 5:
            raise DlrunError(f"{path}, line {n}: {len(fields)} fields; a YOLO line is `class cx cy w h` (5 fields).")
        try:
            cls, cx, cy, w, h = int(fields[0]), *(float(f) for f in fields[1:])
        except ValueError:
            raise DlrunError(f"{path}, line {n}: {line.strip()!r} is not `class cx cy w h` (an integer class, "
                             "four numbers).") from None
        if cls < 0 or (classes is not None and cls >= classes):
            raise DlrunError(f"{path}, line {n}: class {cls}, but there are {classes} classes "
                             f"(0..{(classes or 1) - 1}).")
        edges = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
        if w <= 0 or h <= 0 or min(edges) < -BOX_TOLERANCE or max(edges) > 1 + BOX_TOLERANCE:
            raise DlrunError(f"{path}, line {n}: the box (cx {cx}, cy {cy}, w {w}, h {h}) is not inside the image; "
                             "YOLO boxes are fractions of the image's width and height, in [0, 1].")
        rows.append([cls, cx, cy, w, h])
    return rows


def class_names(classes, top_id: int) -> list[str]:
    """The object classes' names from dataset.classes (names, or a count), or `top_id` of them named 0, 1, ..."""
    if isinstance(classes, (list, tuple)):
        return [str(c) for c in classes]
    if isinstance(classes, int) and classes >= 1:
        return [str(i) for i in range(classes)]
    if classes is not None:
        raise DlrunError(f"dataset.classes={classes}: give the class names as a list, or their count.")
    return [str(i) for i in range(max(top_id, 1))]


def probe(files: list[Path]) -> tuple[list[tuple[int, int]], bool]:
    """Each image's (height, width), and whether all are greyscale: from the headers; an unreadable image is named."""
    from PIL import Image

    sizes, grey = [], True
    for f in files:
        try:
            with Image.open(f) as img:
                sizes.append(img.size[::-1])
                grey = grey and img.mode in GREY_MODES
        except (OSError, ValueError) as exc:
            raise DlrunError(f"{f} cannot be read as an image ({type(exc).__name__}: {exc}).") from None
    return sizes, grey


def stem_files(folder: Path | None, suffixes) -> dict[str, Path]:
    """A folder's files by stem (those with one of `suffixes`), or {} when there is no folder."""
    if folder is None:
        return {}
    return {f.stem: f for f in sorted(folder.iterdir()) if f.is_file() and f.suffix.lower() in suffixes}


@register_dataset("dense_folder")
def dense_folder(root: str | None = None, classes: list[str] | int | None = None, size: int | list[int] | None = None,
                 channels: int | None = None, val_split: float = 0.15, test_split: float = 0.15, split_seed: int = 0,
                 augment: list | None = None) -> DataBundle:
    """Your own images with masks (masks/) and/or YOLO boxes (labels/), a file of each per image."""
    if not root:
        raise DlrunError("dataset=dense_folder needs its folder: dataset.root=DIR (with images/ and masks/ or "
                         "labels/).")
    top = Path(os.path.expanduser(str(root)))
    moving = sorted(set(parse_augment(augment)) & IMAGE_ONLY)
    if moving:
        raise DlrunError(f"dataset.augment={','.join(moving)} would move the image but not its mask and boxes; use "
                         "noise only, or none.")
    folders = {name: top / name if (top / name).is_dir() else None for name in ("images", "masks", "labels")}
    if folders["images"] is None or (folders["masks"] is None and folders["labels"] is None):
        raise DlrunError(f"{top}: dataset=dense_folder reads images/ with masks/ (a mask PNG per image) and/or labels/ "
                         "(a YOLO .txt per image), each file named as its image.")
    images = list(stem_files(folders["images"], IMAGE_SUFFIXES).values())
    if not images:
        raise DlrunError(f"{folders['images']} holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))}).")
    masks, labels = stem_files(folders["masks"], {".png"}), stem_files(folders["labels"], {".txt"})
    if folders["masks"] is not None:
        lacking = next((f for f in images if f.stem not in masks), None)
        if lacking is not None:
            raise DlrunError(f"{lacking} has no mask ({folders['masks'] / (lacking.stem + '.png')}); with masks/, "
                             "every image needs its mask.")
    given = None if classes is None else len(class_names(classes, 0))
    sizes, grey = probe(images)
    height, width = (size, size) if isinstance(size, int) else tuple(size) if size else \
        collections.Counter(sizes).most_common(1)[0][0]
    channels = channels or (1 if grey else 3)
    if channels not in (1, 3) or min(height, width) < 1:
        raise DlrunError(f"dataset.channels={channels}, dataset.size={size}: channels is 1 or 3, sizes positive.")
    boxes = [read_labels(labels[f.stem], given) if f.stem in labels else [] for f in images]
    ids = [read_mask(masks[f.stem], (height, width), s, given) for f, s in zip(images, sizes)] if masks else None
    top_id = max([max((m.max() for m in ids), default=0) if ids else 0,
                  *(int(b[0]) + 1 for rows in boxes for b in rows)], default=0)
    names = class_names(classes, int(top_id))
    try:
        x = torch.stack([load_image(f, channels, height, width) for f in images])
    except (OSError, ValueError) as exc:
        raise DlrunError(f"an image in {folders['images']} cannot be decoded ({type(exc).__name__}: {exc}).") from None
    table = torch.full((len(images), max(1, max(len(b) for b in boxes)), 5), 0.0)
    table[:, :, 0] = -1
    for i, rows in enumerate(boxes):
        if rows:
            table[i, :len(rows)] = torch.tensor(rows)
    y = torch.from_numpy(np.stack(ids)) if ids else table
    tr, va, te = stratified_split(torch.zeros(len(images)), [1 - val_split - test_split, val_split, test_split],
                                  split_seed, stratify=False)
    mean, std = standardise_stats(x[tr], 255.0)
    notes = [f"{len(images)} images as {channels}x{height}x{width}, {len(names)} classes"
             + (", masks" if ids else "") + (f", {sum(map(len, boxes))} boxes" if folders["labels"] else "")]
    return DataBundle(*(Split(x[i], y[i]) for i in (tr, va, te)), input_shape=(channels, height, width),
                      num_outputs=len(names) + 1, task="segmentation" if ids else "detection", scale=255.0, mean=mean,
                      std=std, classes=["background", *names], notes=notes,
                      targets={"detection": [table[i] for i in (tr, va, te)]} if folders["labels"] else None)
