"""Where epoch metrics go: the console (rich), metrics.jsonl and metrics.csv. One class each."""
from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from dlrun.checkpoint import atomic_write
from dlrun.registry import register_logger


def interactive(console: Console) -> bool:
    """Live progress bars only on a real terminal and outside CI; plain lines otherwise."""
    return console.is_terminal and not os.environ.get("CI")


class Logger:
    def start(self, history: list[dict]) -> None: ...
    def log_epoch(self, row: dict) -> None: ...
    def finish(self, summary: dict) -> None: ...


@register_logger("jsonl")
class JSONLLogger(Logger):
    """one JSON object per epoch in metrics.jsonl"""

    def __init__(self, run_dir: Path, console: Console | None = None):
        self.path = Path(run_dir) / "metrics.jsonl"

    def start(self, history):
        # On resume the file is rebuilt from the checkpoint's history, so no row is ever duplicated.
        text = "".join(json.dumps(r) + "\n" for r in history)
        atomic_write(self.path, lambda f: f.write(text.encode()))

    def log_epoch(self, row):
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")


@register_logger("csv")
class CSVLogger(Logger):
    """one row per epoch in metrics.csv"""

    def __init__(self, run_dir: Path, console: Console | None = None):
        self.path = Path(run_dir) / "metrics.csv"
        self.rows: list[dict] = []

    def start(self, history):
        self.rows = list(history)
        self._write()

    def log_epoch(self, row):
        self.rows.append(row)
        self._write()  # columns may grow (e.g. a metric that appears later), so rewrite; it is small

    def _write(self):
        fields = list(dict.fromkeys(k for r in self.rows for k in r))
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=fields)
        w.writeheader()
        w.writerows(self.rows)
        atomic_write(self.path, lambda f: f.write(buf.getvalue().encode()))


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"
    return str(v)


@register_logger("console")
class ConsoleLogger(Logger):
    """a row per epoch and a final summary table on the terminal"""

    COLUMNS = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "epoch_time")

    def __init__(self, run_dir: Path, console: Console | None = None):
        self.console = console or Console()
        self.header_done = False

    def start(self, history):
        if history:
            self.console.print(f"resuming after epoch {history[-1]['epoch']}")

    def log_epoch(self, row):
        cols = [c for c in self.COLUMNS if c in row]
        widths = [max(len(c), 8) for c in cols]
        if not self.header_done:
            self.console.print("  ".join(f"{c:>{w}}" for c, w in zip(cols, widths)), style="bold", highlight=False)
            self.header_done = True
        self.console.print("  ".join(f"{_fmt(row[c]):>{w}}" for c, w in zip(cols, widths)), highlight=False)

    def finish(self, summary):
        table = Table(title=f"dlrun: {summary.get('status')}", show_header=False)
        for key in ("model", "dataset", "epochs_completed", "best_epoch", "params", "test_loss",
                    "test_accuracy", "wall_time", "run_dir"):
            if summary.get(key) is not None:
                table.add_row(key, _fmt(summary[key]))
        self.console.print(table)


class EpochProgress:
    """A transient rich progress bar over one epoch's steps; silent when not interactive."""

    def __init__(self, console: Console):
        self.console, self.enabled = console, interactive(console)
        self.progress, self.task = None, None

    def start(self, epoch: int, total: int, done: int = 0):
        if not self.enabled:
            return
        self.progress = Progress(TextColumn(f"epoch {epoch}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("loss {task.fields[loss]}"), TimeElapsedColumn(),
                                 console=self.console, transient=True)
        self.progress.start()
        self.task = self.progress.add_task("train", total=total, completed=done, loss="-")

    def update(self, completed: int, loss: float | None = None):
        if self.progress is not None:
            self.progress.update(self.task, completed=completed, loss=f"{loss:.4f}" if loss is not None else "-")

    def stop(self):
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
