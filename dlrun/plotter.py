"""The run's PNGs (the confusion matrix; an autoencoder's reconstructions; seq2seq's attention maps; segmentation
masks; detection boxes), drawn here or in a helper process.

Importing matplotlib costs about 1 s, a sixth of the default run. A CLI run starts the helper before it
imports torch, so that second is spent on another core while torch loads and the model trains; at the
end the run waits only for the drawing itself. This module imports neither torch nor matplotlib.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path


DPI = 100
MIN_SIZE = (5.0, 4.0)  # inches: every PNG dlrun draws is at least 500 x 400 pixels
EM = 0.6  # a character's width in DejaVu Sans, roughly, in units of the font size


def pyplot():
    """matplotlib.pyplot with the file-only Agg backend (no display needed); imported on first use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def text_width(text: str, fontsize: float) -> float:
    """About how many inches `text`'s longest line takes at `fontsize` points."""
    return max((len(line) for line in str(text).splitlines()), default=0) * EM * fontsize / 72


def wrap(text: str, width: float, fontsize: float) -> str:
    """`text` broken into lines that fit `width` inches at `fontsize` points (long words are split too)."""
    chars = max(8, int(width * 72 / (EM * fontsize)))
    return "\n".join(line for part in str(text).splitlines()
                     for line in textwrap.wrap(part, chars, break_long_words=True) or [""])


def save(fig, path) -> None:
    fig.savefig(path, dpi=DPI)
    pyplot().close(fig)


def confusion_figure(cm: list[list[int]], classes: list[str] | None, title: str = ""):
    """Counts as a heat map, rows true classes, columns predictions; the count in each cell up to 30
    classes, a colour bar beyond. Cells and fonts shrink with the class count; the figure grows with
    the class names, so titles and labels stay whole from 2 to 100+ classes."""
    plt = pyplot()
    k = len(cm)
    top = max(max(row) for row in cm)
    labels = [str(c) for c in classes] if classes and len(classes) == k else [str(i) for i in range(k)]
    cell = min(0.5, max(0.15, 8 / k))  # inches per cell
    font = min(9.0, 0.6 * cell * 72)  # tick labels as tall as about 60% of a cell
    numbers = k <= 30
    names = text_width(max(labels, key=len), font)
    width = max(MIN_SIZE[0], k * cell + names + (0.8 if numbers else 1.6))  # + axis label (+ colour bar)
    title = wrap(title, width - 0.3, 10)
    height = max(MIN_SIZE[1], k * cell + names + 0.8 + 0.25 * (title.count("\n") + 1))
    fig, ax = plt.subplots(figsize=(width, height), layout="constrained")
    image = ax.imshow(cm, cmap="Blues")
    if numbers:
        shown = max(cell, (min(width, height) - names - 1.2) / k)  # a few classes get large cells: large digits
        for i in range(k):
            for j in range(k):
                ax.text(j, i, int(cm[i][j]), ha="center", va="center", fontsize=min(12.0, 0.3 * shown * 72),
                        color="white" if cm[i][j] > top / 2 else "black")
    else:
        fig.colorbar(image, ax=ax, shrink=0.6).ax.tick_params(labelsize=8)
    ax.set(xticks=range(k), yticks=range(k))
    ax.set_xlabel("predicted", fontsize=9)
    ax.set_ylabel("true", fontsize=9)
    fig.suptitle(title, fontsize=10)
    ax.set_xticklabels(labels, rotation=90, fontsize=font)
    ax.set_yticklabels(labels, fontsize=font)
    return fig


def draw_confusion(cm: list[list[int]], classes: list[str] | None, path: str, title: str = "") -> None:
    """`confusion_figure` as a PNG at `path`."""
    save(confusion_figure(cm, classes, title), path)


def images_figure(rows: list[list], labels: list[str], title: str = ""):
    """A grid of images, one row per entry of `rows` (each a list of (C, H, W) nested lists, C = 1 or 3),
    each row named by `labels`; every image is scaled to its own min..max for display."""
    import numpy as np

    plt = pyplot()
    n = max(len(r) for r in rows)
    width = max(MIN_SIZE[0], 1.1 * n + 0.8)
    title = wrap(title, width - 0.3, 10)
    height = max(MIN_SIZE[1], 1.2 * len(rows) + 0.3 + 0.25 * (title.count("\n") + 1))
    fig, axes = plt.subplots(len(rows), n, figsize=(width, height), squeeze=False, layout="constrained")
    for r, (row, label) in enumerate(zip(rows, labels)):
        for c in range(n):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(row):
                img = np.asarray(row[c], dtype=float).transpose(1, 2, 0)
                img = (img - img.min()) / max(img.max() - img.min(), 1e-12)
                ax.imshow(img[..., 0] if img.shape[2] == 1 else img, cmap="gray")
        axes[r][0].set_ylabel(wrap(label, 1.1, 8), fontsize=8)
    fig.suptitle(title, fontsize=10)
    return fig


def draw_images(rows: list[list], labels: list[str], path: str, title: str = "") -> None:
    """`images_figure` as a PNG at `path`."""
    save(images_figure(rows, labels, title), path)


def attention_figure(maps: list[dict], title: str = ""):
    """Cross-attention heat maps side by side, one per pair: each map's `weights` (output steps x source tokens),
    its `source` tokens along x and `output` tokens along y."""
    plt = pyplot()
    font = 7
    widths = [max(1.5, 0.16 * len(m["source"]) + 0.6) for m in maps]
    width = max(MIN_SIZE[0], sum(widths) + 0.4 * len(maps))
    height = max(MIN_SIZE[1], 0.16 * max(len(m["output"]) for m in maps) + 1.6)
    fig, axes = plt.subplots(1, len(maps), figsize=(width, height), squeeze=False, layout="constrained",
                             gridspec_kw={"width_ratios": widths})
    for ax, m in zip(axes[0], maps):
        ax.imshow(m["weights"], cmap="viridis", vmin=0, vmax=1, aspect="auto", interpolation="nearest")
        ax.set_xticks(range(len(m["source"])), [t if t.strip() else "\u2423" for t in m["source"]], fontsize=font,
                      rotation=90)
        ax.set_yticks(range(len(m["output"])), m["output"], fontsize=font)
        ax.set_xlabel("source", fontsize=font + 1)
    axes[0][0].set_ylabel("generated", fontsize=font + 1)
    fig.suptitle(wrap(title, width - 0.3, 10), fontsize=10)
    return fig


def draw_attention(maps: list[dict], path: str, title: str = "") -> None:
    """`attention_figure` as a PNG at `path`."""
    save(attention_figure(maps, title), path)


def class_colours(k: int):
    """k RGB colours: black for class 0 (background), then tab10's (tab20's beyond 10 classes, cycled)."""
    plt = pyplot()
    cmap = plt.get_cmap("tab10" if k <= 11 else "tab20")
    return [(0.0, 0.0, 0.0)] + [cmap(i % cmap.N)[:3] for i in range(k - 1)]


def show_image(ax, image: list) -> None:
    """A (channels, H, W) image scaled to 0..1 on `ax`: grey for one channel, colour for three."""
    import numpy as np

    img = np.asarray(image, dtype=float).transpose(1, 2, 0)
    img = (img - img.min()) / max(img.max() - img.min(), 1e-12)
    ax.imshow(img[..., 0] if img.shape[2] == 1 else img, cmap="gray")


def masks_figure(images: list, true: list, pred: list, classes: list[str], title: str = ""):
    """Three rows: images ((channels, H, W) nested lists), their true masks and the predicted ones (class ids),
    coloured by class with a legend of the classes that appear."""
    import numpy as np
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    plt = pyplot()
    k, n = len(classes), len(images)
    colours = class_colours(k)
    cmap = ListedColormap(colours)
    shown = sorted(set(np.unique(true).tolist()) | set(np.unique(pred).tolist()))
    width = max(MIN_SIZE[0], 1.2 * n + 1.0 + text_width(max(classes, key=len), 8) + 0.6)
    title = wrap(title, width - 0.3, 10)
    height = max(MIN_SIZE[1], 1.25 * 3 + 0.4 + 0.25 * (title.count("\n") + 1))
    fig, axes = plt.subplots(3, n, figsize=(width, height), squeeze=False, layout="constrained")
    for r, (row, label) in enumerate(zip((images, true, pred), ("image", "true", "predicted"))):
        for c in range(n):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                show_image(ax, row[c])
            else:
                ax.imshow(np.asarray(row[c]), cmap=cmap, vmin=-0.5, vmax=k - 0.5, interpolation="nearest")
        axes[r][0].set_ylabel(label, fontsize=8)
    fig.legend(handles=[Patch(facecolor=colours[i], edgecolor="grey", label=str(classes[i])) for i in shown],
               loc="outside right center", fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=10)
    return fig


def draw_masks(images: list, true: list, pred: list, classes: list[str], path: str, title: str = "") -> None:
    """`masks_figure` as a PNG at `path`."""
    save(masks_figure(images, true, pred, classes, title), path)


def boxes_figure(images: list, true: list, pred: list, title: str = ""):
    """Images ((C, H, W) nested lists) with boxes, 8 a row: each image's `true` boxes in green and `pred` boxes in
    red, each box [x1, y1, x2, y2, label] in pixels, the label written above it."""
    from matplotlib.patches import Rectangle

    plt = pyplot()
    n = len(images)
    cols = min(n, 8)
    rows = (n + cols - 1) // cols
    width = max(MIN_SIZE[0], 1.6 * cols + 0.4)
    title = wrap(title, width - 0.3, 10)
    height = max(MIN_SIZE[1], 1.7 * rows + 0.3 + 0.25 * (title.count("\n") + 1))
    fig, axes = plt.subplots(rows, cols, figsize=(width, height), squeeze=False, layout="constrained")
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if i >= n:
            ax.axis("off")
            continue
        show_image(ax, images[i])
        for boxes, colour, place in ((true[i], "lime", "bottom"), (pred[i], "red", "top")):
            for x1, y1, x2, y2, label in boxes:
                ax.add_patch(Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, edgecolor=colour,
                                       linewidth=1))
                ax.text(x1 - 0.5, y1 - 0.5 if place == "top" else y2 - 0.5, label, color=colour, fontsize=6,
                        va="bottom" if place == "top" else "top", clip_on=True)
    fig.suptitle(title, fontsize=10)
    return fig


def draw_boxes(images: list, true: list, pred: list, path: str, title: str = "") -> None:
    """`boxes_figure` as a PNG at `path`."""
    save(boxes_figure(images, true, pred, title), path)


DRAW = {"confusion": draw_confusion, "images": draw_images, "attention": draw_attention, "masks": draw_masks,
        "boxes": draw_boxes}


def draw(job: dict) -> None:
    """Draw one job: {"kind": "confusion" | "images" | "attention" | "masks" | "boxes", ...the drawing function's
    arguments}."""
    job = dict(job)
    DRAW[job.pop("kind", "confusion")](**job)


class Plotter:
    """Draws in this process, or, made with `Plotter.start()`, in a helper that loads matplotlib meanwhile.

    Whatever the helper fails to draw (it died, matplotlib is broken) is drawn here at `close()`, so an
    error shows where it would have without the helper.
    """

    def __init__(self, proc: subprocess.Popen | None = None):
        self.proc, self.sent = proc, []

    @classmethod
    def start(cls) -> "Plotter":
        try:  # stderr is dropped: a failure is redrawn here, where its error shows
            proc = subprocess.Popen([sys.executable, "-m", "dlrun.plotter"], stdin=subprocess.PIPE,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except OSError:
            proc = None
        return cls(proc)

    def confusion(self, cm: list[list[int]], classes: list[str] | None, path: Path, title: str = "") -> None:
        self._send({"kind": "confusion", "cm": cm, "classes": classes, "path": str(Path(path).resolve()),
                    "title": title})

    def images(self, rows: list[list], labels: list[str], path: Path, title: str = "") -> None:
        self._send({"kind": "images", "rows": rows, "labels": labels, "path": str(Path(path).resolve()),
                    "title": title})

    def attention(self, maps: list[dict], path: Path, title: str = "") -> None:
        self._send({"kind": "attention", "maps": maps, "path": str(Path(path).resolve()), "title": title})

    def masks(self, images: list, true: list, pred: list, classes: list[str], path: Path, title: str = "") -> None:
        self._send({"kind": "masks", "images": images, "true": true, "pred": pred, "classes": classes,
                    "path": str(Path(path).resolve()), "title": title})

    def boxes(self, images: list, true: list, pred: list, path: Path, title: str = "") -> None:
        self._send({"kind": "boxes", "images": images, "true": true, "pred": pred, "path": str(Path(path).resolve()),
                    "title": title})

    def _send(self, job: dict) -> None:
        if self.proc is None:
            draw(job)
            return
        self.sent.append(job)
        try:  # sent at once: the helper draws while this process writes the summary
            self.proc.stdin.write((json.dumps(job) + "\n").encode())
            self.proc.stdin.flush()
        except OSError:
            pass  # a dead helper: close() draws it here

    def close(self, timeout: float = 120) -> None:
        """Wait for the helper to finish its drawings; draw here any it did not make."""
        if not self.sent:  # nothing to draw (a regression task, an interrupted run): no need to wait
            self.cancel()
            return
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            proc.stdin.close()
            ok = proc.wait(timeout) == 0
        except (OSError, subprocess.TimeoutExpired):
            ok = False
        if not ok:
            self._kill(proc)
            for job in self.sent:
                draw(job)
        self.sent = []

    def cancel(self) -> None:
        """Stop the helper without drawing (the run was aborted)."""
        proc, self.proc, self.sent = self.proc, None, []
        if proc is not None:
            self._kill(proc)

    @staticmethod
    def _kill(proc: subprocess.Popen) -> None:
        proc.kill()
        proc.wait()
        if proc.stdin and not proc.stdin.closed:
            try:
                proc.stdin.close()
            except OSError:
                pass


def _serve() -> None:
    """The helper: load matplotlib, then draw each job read from stdin until it closes."""
    pyplot()  # the slow part, done before any job arrives
    for line in sys.stdin:
        draw(json.loads(line))


if __name__ == "__main__":
    try:
        _serve()
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group; the run reports it
        sys.exit(130)
