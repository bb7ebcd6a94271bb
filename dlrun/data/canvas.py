"""Canvases of real items for dense tasks: scikit-learn's 8x8 digits (upscaled) or Fashion-MNIST items pasted at
random positions and sizes on a larger black canvas, with a per-pixel mask and a box per item.

Each split's canvases are made from its own items (the items are split first, by class), so no test canvas shows
a digit the model trained on. An item's pixels above `threshold` (of full intensity) are its shape: they cover
the canvas and the mask (later items cover earlier ones); its fainter pixels only brighten the canvas. The mask
holds 0 for background and c + 1 for an item of class c. Each item's box is the tight box of its pixels still
visible at the end (an item covered completely gets none), as YOLO writes it: [class, cx, cy, w, h], normalised
to the canvas. `clutter` pastes small fragments of other items first, as distractors that stay background.
Everything is drawn from `seed`, so the same settings give the same canvases.
"""
from __future__ import annotations

import numpy as np
import torch

from dlrun.data.augment import IMAGE_ONLY, parse_augment
from dlrun.data.bundle import DataBundle, Split, standardise_stats
from dlrun.errors import DlrunError
from dlrun.registry import register_dataset

SOURCES = ("digits", "fashion_mnist")
THRESHOLDS = {"digits": 0.3, "fashion_mnist": 0.05}  # dataset.threshold=null: a blurred digit's edge is not its
# shape; a garment is all its non-black pixels (dark clothes too)
PLACEMENT_TRIES = 50  # overlap=false: positions tried per item before it is left out
FRAGMENT = (0.2, 0.4)  # a clutter fragment's side, as a fraction of its item's side


def source_items(source: str, val_split: float, test_split: float, seed: int, classes: list[int] | None = None):
    """(items per split [train, val, test] as float32 (n, h, w) arrays in 0..1, labels per split, class names);
    `classes`: a subset of the source's classes, relabelled 0..k-1 in their order."""
    items, labels, names = all_items(source, val_split, test_split, seed)
    if not classes:
        return items, labels, names
    wanted = sorted({int(c) for c in classes})
    if wanted[0] < 0 or wanted[-1] >= len(names):
        raise DlrunError(f"dataset.classes={list(classes)}: {source} has classes 0..{len(names) - 1}.")
    keep = [np.isin(y, wanted) for y in labels]
    return ([x[k] for x, k in zip(items, keep)], [np.searchsorted(wanted, y[k]) for y, k in zip(labels, keep)],
            [names[c] for c in wanted])


def all_items(source: str, val_split: float, test_split: float, seed: int):
    """Every item of the source, split: (items per split, labels per split, class names)."""
    if source == "digits":
        from dlrun.data.digits import digits

        data = digits(val_split=val_split, test_split=test_split, split_seed=seed)
        splits = (data.train, data.val, data.test)
        return [s.x[:, 0].float().numpy() / 16.0 for s in splits], [s.y.numpy() for s in splits], list(data.classes)
    if source == "fashion_mnist":
        from dlrun.data.vision import FASHION_CLASSES, fashion_mnist

        try:
            data = fashion_mnist(download=False, val_split=val_split, split_seed=seed)
        except DlrunError as exc:
            raise DlrunError("dataset.source=fashion_mnist needs Fashion-MNIST on this machine (Debian's "
                             "dataset-fashion-mnist package, or the IDX files in $DLRUN_DATA/FashionMNIST/raw): "
                             f"{str(exc).splitlines()[0]}", exit_code=exc.exit_code) from None
        splits = (data.train, data.val, data.test)
        return ([s.x[:, 0].float().numpy() / 255.0 for s in splits], [s.y.numpy() for s in splits],
                list(FASHION_CLASSES))
    raise DlrunError(f"dataset.source={source}: choose {' or '.join(SOURCES)}.")


def resized(item: np.ndarray, side: int) -> np.ndarray:
    """An item as a `side` x `side` array, bilinear (antialiased when it shrinks)."""
    t = torch.from_numpy(item)[None, None]
    return torch.nn.functional.interpolate(t, size=(side, side), mode="bilinear", align_corners=False,
                                           antialias=side < item.shape[0])[0, 0].clamp(0, 1).numpy()


def tight_box(shape: np.ndarray) -> tuple[int, int, int, int] | None:
    """(top, left, bottom, right), inclusive, of a boolean map's True pixels, or None when it has none."""
    rows, cols = np.nonzero(shape.any(axis=1))[0], np.nonzero(shape.any(axis=0))[0]
    if not len(rows):
        return None
    return int(rows[0]), int(cols[0]), int(rows[-1]), int(cols[-1])


def intersects(a: tuple, b: tuple) -> bool:
    return not (a[2] < b[0] or b[2] < a[0] or a[3] < b[1] or b[3] < a[1])


def paint(items: np.ndarray, labels: np.ndarray, n: int, size: int, objects: int, min_objects: int, overlap: bool,
          clutter: int, noise: float, item_size: tuple[int, int], threshold: float, rng: np.random.Generator):
    """`n` canvases: (images float32 (n, size, size) in 0..1, masks int64 (n, size, size), instance maps int64
    (n, size, size): 0 or the item's number from 1, boxes float32 (n, objects, 5))."""
    images = np.zeros((n, size, size), np.float32)
    masks = np.zeros((n, size, size), np.int64)
    instances = np.zeros((n, size, size), np.int64)
    boxes = np.zeros((n, objects, 5), np.float32)
    boxes[:, :, 0] = -1
    for i in range(n):
        canvas, mask, inst = images[i], masks[i], instances[i]
        for _ in range(clutter):  # fragments first: the items cover them
            source = items[rng.integers(len(items))]
            piece = resized(source, int(rng.integers(item_size[0], item_size[1] + 1)))
            side = max(2, int(len(piece) * rng.uniform(*FRAGMENT)))
            r, c = rng.integers(0, len(piece) - side + 1, size=2)
            frag = piece[r:r + side, c:c + side]
            y, x = rng.integers(0, size - side + 1, size=2)
            np.maximum(canvas[y:y + side, x:x + side], frag, out=canvas[y:y + side, x:x + side])
        placed, classes = [], []
        for _ in range(int(rng.integers(min_objects, objects + 1))):
            k = int(rng.integers(len(items)))
            side = int(rng.integers(item_size[0], item_size[1] + 1))
            item = resized(items[k], side)
            shape = item > threshold
            box = tight_box(shape)
            if box is None:
                continue
            for _ in range(PLACEMENT_TRIES):
                y, x = (int(v) for v in rng.integers(0, size - side + 1, size=2))
                at = (box[0] + y, box[1] + x, box[2] + y, box[3] + x)
                if overlap or not any(intersects(at, other) for other in placed):
                    break
            else:
                continue  # no free place for it
            placed.append(at)
            classes.append(int(labels[k]))
            region = (slice(y, y + side), slice(x, x + side))
            np.maximum(canvas[region], item, out=canvas[region])
            canvas[region][shape] = item[shape]  # its shape covers what was there (a brighter earlier item too)
            mask[region][shape] = labels[k] + 1
            inst[region][shape] = len(placed)
        row = 0
        for number, cls in enumerate(classes, start=1):
            box = tight_box(inst == number)
            if box is None:  # covered completely by later items
                continue
            top, left, bottom, right = box
            boxes[i, row] = (cls, (left + right + 1) / (2 * size), (top + bottom + 1) / (2 * size),
                             (right - left + 1) / size, (bottom - top + 1) / size)
            row += 1
    if noise:
        images += rng.normal(0.0, noise, images.shape).astype(np.float32)
    return images.clip(0, 1), masks, instances, boxes


def check(size: int, objects: int, min_objects: int, clutter: int, noise: float, n_samples: int,
          item_size, threshold: float, augment) -> tuple[int, int]:
    """The settings, or a DlrunError naming the one that cannot work; returns the item sizes (smallest, largest)."""
    if size < 16:
        raise DlrunError(f"dataset.size={size}: a canvas needs at least 16 pixels a side (64 or 96 suit it).")
    if not 1 <= min_objects <= objects:
        raise DlrunError(f"dataset.min_objects={min_objects}, dataset.objects={objects}: give "
                         "1 <= min_objects <= objects.")
    if clutter < 0 or noise < 0 or n_samples < 1 or not 0 < threshold < 1:
        raise DlrunError("dataset.clutter and dataset.noise are >= 0, dataset.n_samples >= 1, dataset.threshold "
                         "in (0, 1).")
    lo, hi = (size // 4, size // 2) if item_size is None else (int(item_size[0]), int(item_size[-1]))
    if not 4 <= lo <= hi <= size:
        raise DlrunError(f"dataset.item_size={item_size}: give [smallest, largest] item sides in pixels, 4 to {size}.")
    moving = sorted(set(parse_augment(augment)) & IMAGE_ONLY)
    if moving:
        raise DlrunError(f"dataset.augment={','.join(moving)} would move the image but not its mask and boxes; "
                         "canvases already vary position and size: use noise only, or none.")
    return lo, hi


@register_dataset("canvas")
def canvas(source: str = "digits", size: int = 64, objects: int = 3, min_objects: int = 1, overlap: bool = True,
           clutter: int = 0, noise: float = 0.0, n_samples: int = 3000, val_split: float = 0.1,
           test_split: float = 0.2, seed: int = 0, item_size: list[int] | None = None, threshold: float | None = None,
           classes: list[int] | None = None, augment: list | None = None) -> DataBundle:
    """Digits or Fashion-MNIST items pasted on a larger canvas: a class per pixel, and a box per item."""
    threshold = THRESHOLDS.get(source, 0.3) if threshold is None else threshold
    sides = check(size, objects, min_objects, clutter, noise, n_samples, item_size, threshold, augment)
    items, labels, names = source_items(source, val_split, test_split, seed, classes)
    counts = [round(n_samples * f) for f in (val_split, test_split)]
    counts = [n_samples - sum(counts), *counts]
    rng = np.random.default_rng(seed)
    splits, boxes = [], []
    for pool, pool_labels, n in zip(items, labels, counts):
        images, masks, _, split_boxes = paint(pool, pool_labels, n, size, objects, min_objects, overlap, clutter,
                                              noise, sides, threshold, rng)
        x = torch.from_numpy(np.rint(images * 255).astype(np.uint8)).unsqueeze(1)
        splits.append(Split(x, torch.from_numpy(masks)))
        boxes.append(torch.from_numpy(split_boxes))
    mean, std = standardise_stats(splits[0].x, 255.0)
    notes = [f"{n_samples} canvases of {size}x{size} with {min_objects} to {objects} {source} item(s) each "
             f"({counts[0]} train, {counts[1]} val, {counts[2]} test), made from separate items per split"]
    return DataBundle(*splits, input_shape=(1, size, size), num_outputs=len(names) + 1, task="segmentation",
                      scale=255.0, mean=mean, std=std, classes=["background", *names], notes=notes,
                      targets={"detection": boxes})
