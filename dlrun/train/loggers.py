"""Where epoch metrics go: the console (rich), metrics.jsonl, metrics.csv, TensorBoard. One class each."""
from __future__ import annotations

import csv
import datetime
import io
import json
import os
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from dlrun.train.checkpoint import atomic_write
from dlrun.errors import DlrunError
from dlrun.registry import register_logger


PROGRESS_EVERY_ENV = "DLRUN_PROGRESS_EVERY"  # seconds between plain progress lines when not on a terminal


def interactive(console: Console) -> bool:
    """Live progress bars only on a real terminal and outside CI; plain lines otherwise."""
    return console.is_terminal and not os.environ.get("CI")


def job_label() -> str:
    """'[job N] ' inside job N of a multirun (`dlrun -m`), so that parallel jobs' lines can be told apart;
    '' otherwise."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return ""
    hc = HydraConfig.get()
    return f"[job {hc.job.num}] " if hc.mode == RunMode.MULTIRUN else ""


class Logger:
    def attach(self, trainer) -> None: ...  # before start: the model, data and config, for loggers that need them
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
    """a row per epoch (within 80 columns; each prefixed with '[job N]' in a multirun) and a final summary
    table on the terminal"""

    COLUMNS = {"epoch": "epoch", "train_loss": "train_loss", "train_accuracy": "train_acc", "val_loss": "val_loss",
               "val_accuracy": "val_acc", "env_steps": "env_steps", "epsilon": "epsilon",  # env=...: dlrun/rl
               "train_return_mean": "train_ret", "val_return_mean": "val_return", "delta": "delta",
               "lr": "lr", "epoch_time": "time_s"}  # row key -> header

    def __init__(self, run_dir: Path, console: Console | None = None):
        self.console = console or Console()
        self.header_done = False
        self.label = job_label()

    def _line(self, cells: list[str], widths: list[int], **style) -> None:
        # soft_wrap: never folded at rich's 80 columns in a pipe (a terminal folds what does not fit)
        self.console.print(self.label + " ".join(f"{c:>{w}}" for c, w in zip(cells, widths)), highlight=False,
                           markup=False, soft_wrap=True, **style)

    def start(self, history):
        if history:
            self.console.print(f"{self.label}resuming after epoch {history[-1]['epoch']}", highlight=False,
                               markup=False)

    def log_epoch(self, row):
        cols = [c for c in self.COLUMNS if c in row]
        widths = [5 if c == "epoch" else max(len(self.COLUMNS[c]), 9) for c in cols]
        if not self.header_done:
            self._line([self.COLUMNS[c] for c in cols], widths, style="bold")
            self.header_done = True
        self._line([_fmt(row[c]) for c in cols], widths)

    def finish(self, summary):
        from dlrun.report.tables import print_table

        title = Text(f"{self.label}dlrun: {summary.get('status')}")  # Text: '[job 3]' is no markup
        table = Table(title=title, show_header=False)
        for key in ("model", "dataset", "env", "epochs_completed", "best_epoch", "params", "test_loss",
                    "test_accuracy", "test_return_mean", "wall_time", "run_dir"):
            if summary.get(key) is not None:
                table.add_row(key, _fmt(summary[key]))
        print_table(table, console=self.console)


def _flat(d: dict, prefix: str = "") -> dict:
    """{'optimizer': {'lr': 0.1}} -> {'optimizer.lr': 0.1}; lists and None as text (what hparams accepts)."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v if isinstance(v, (bool, int, float, str)) else str(v)
    return out


@register_logger("tensorboard")
class TensorBoardLogger(Logger):
    """TensorBoard event files in RUN/tb/: epoch scalars, hyperparameters with final metrics, model graph"""

    def __init__(self, run_dir: Path, console: Console | None = None):
        self.dir, self.console = Path(run_dir) / "tb", console
        self.writer, self.trainer, self.options = None, None, {}

    def attach(self, trainer):
        self.trainer = trainer
        opts = trainer.config.get("logger", {}).get("tensorboard")
        self.options = opts if isinstance(opts, dict) else {}  # `tensorboard: true` or `tensorboard: {graph: ...}`

    def start(self, history):
        try:  # imported here: tensorboard costs start-up time that other runs should not pay
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            raise DlrunError(f"logger tensorboard needs the tensorboard package ({exc}): pip install tensorboard") from None
        first = not list(self.dir.glob("events.out.tfevents.*"))  # not a resumed run
        # On resume, points after the checkpoint's last epoch (redone now) are hidden from TensorBoard.
        self.writer = SummaryWriter(str(self.dir), purge_step=history[-1]["epoch"] + 1 if history else None)
        if first and self.options.get("graph", True) and self.trainer is not None:
            self._add_graph()

    def _add_graph(self):
        """Trace the model on one validation sample, in eval mode (no BN update, no RNG draw)."""
        import warnings

        import torch

        t = self.trainer
        x = t.loop.example_input()
        if x is None:
            return
        was_training = t.model.training
        t.model.eval()
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # torch.jit.trace's deprecation notice
                self.writer.add_graph(t.model, x)
        except Exception as exc:  # some models cannot be traced; the graph is a nicety
            if self.console is not None:
                self.console.print(f"[yellow]tensorboard: no model graph ({type(exc).__name__}: "
                                   f"{str(exc).splitlines()[0] if str(exc) else ''})[/yellow]")
        finally:
            t.model.train(was_training)

    def log_epoch(self, row):
        for key, value in row.items():
            if key not in ("epoch", "step") and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(key, value, row["epoch"])
        self.writer.flush()  # a live `tensorboard --logdir` sees each epoch as it ends

    def finish(self, summary):
        if self.writer is None:
            return
        if summary.get("status") != "interrupted":  # a resumed run writes its hparams when it ends
            self._add_hparams(summary)
        self.writer.close()
        self.writer = None

    def _add_hparams(self, summary):
        """The config's values as hyperparameters, the final metrics as the hparams view's metrics."""
        from torch.utils.tensorboard.summary import hparams

        config = {k: v for k, v in (self.trainer.config if self.trainer else {}).items() if k != "logger"}
        final = {k: summary.get(k) for k in summary if k.startswith("test_")}
        if summary.get("best_monitor"):
            final[f"best_{summary['best_monitor']}"] = summary.get("best_value")
        final["epochs_completed"] = summary.get("epochs_completed")
        final = {f"final/{k}": float(v) for k, v in final.items()
                 if isinstance(v, (int, float)) and not isinstance(v, bool)}
        hp = {**_flat(config), "status": summary.get("status", "")}
        for s in hparams(hp, final):
            self.writer.file_writer.add_summary(s)
        step = summary.get("epochs_completed") or 0
        for key, value in final.items():
            self.writer.add_scalar(key, value, step)


def _clock(seconds: float) -> str:
    return str(datetime.timedelta(seconds=round(seconds)))


def _seconds(text: str) -> float:
    try:
        return max(0.0, float(text))
    except ValueError:
        raise DlrunError(f"{PROGRESS_EVERY_ENV}={text!r}: give the seconds between progress lines, e.g. 30") from None


class EpochProgress:
    """Progress over one epoch's steps: a transient rich bar with the time left on a terminal; elsewhere (a
    pipe, CI) a plain line every `every` seconds (default: $DLRUN_PROGRESS_EVERY, else 30), so that a log
    shows a long epoch advancing."""

    def __init__(self, console: Console, every: float | None = None):
        self.console, self.enabled = console, interactive(console)
        self.every = every if every is not None else _seconds(os.environ.get(PROGRESS_EVERY_ENV) or "30")
        self.label = job_label()
        self.progress, self.task = None, None
        self.epoch, self.total, self.first, self.started, self.last_line = 0, 0, 0, 0.0, 0.0

    @property
    def live(self) -> bool:
        """Whether a bar is on screen now."""
        return self.progress is not None

    def start(self, epoch: int, total: int, done: int = 0):
        self.epoch, self.total, self.first = epoch, total, done
        self.started = self.last_line = time.monotonic()
        if not self.enabled:
            return
        self.progress = Progress(TextColumn(f"{self.label}epoch {epoch}", markup=False), BarColumn(),
                                 MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"), TimeElapsedColumn(),
                                 TextColumn("eta"), TimeRemainingColumn(), console=self.console, transient=True)
        self.progress.start()
        self.task = self.progress.add_task("train", total=total, completed=done, loss="-")

    def update(self, completed: int, loss: float | None = None):
        if self.progress is not None:
            self.progress.update(self.task, completed=completed, loss=f"{loss:.4f}" if loss is not None else "-")
            return
        now = time.monotonic()
        if self.enabled or now - self.last_line < self.every or completed >= self.total:
            return  # the epoch's own line follows at its end
        self.last_line, elapsed = now, now - self.started
        rate = (completed - self.first) / elapsed if elapsed > 0 else 0
        eta = f", eta {_clock((self.total - completed) / rate)}" if rate > 0 else ""
        loss_text = f", loss {loss:.4f}" if loss is not None else ""
        self.console.print(f"{self.label}epoch {self.epoch}: step {completed}/{self.total} "
                           f"({100 * completed // max(self.total, 1)}%){loss_text}, {_clock(elapsed)} elapsed{eta}",
                           highlight=False, markup=False, soft_wrap=True)

    def interrupt_notice(self, text: str) -> bool:
        """For a signal handler: print `text` on a line of its own above the live bar and return True;
        return False, printing nothing, when no bar is on screen (the caller writes it as usual)."""
        if self.progress is None:
            return False
        self.progress.console.print(text.rstrip("\n"), highlight=False, markup=False, soft_wrap=True)
        return True

    def stop(self):
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
