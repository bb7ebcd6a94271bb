"""Keras-style callbacks: checkpointing, early stopping and logging hook into the one trainer."""
from __future__ import annotations

import math
from pathlib import Path

from dlrun.metric_names import mode_for
from dlrun.train.run_folder import log


class Callback:
    """A hook into the trainer; every method is called by it (Keras' callbacks, Lightning's hooks)."""

    def on_fit_start(self, trainer) -> None: ...  # before the first epoch (of this process: also on resume)
    def on_epoch_end(self, trainer, logs: dict) -> None: ...  # after each epoch, with its metrics row
    def on_fit_end(self, trainer) -> None: ...  # when the epochs are done or training stopped early
    def on_run_end(self, trainer, summary: dict) -> None: ...  # the run is over, whatever its outcome
    def state_dict(self) -> dict: return {}  # what a checkpoint keeps of it
    def load_state_dict(self, state: dict) -> None: ...


class Monitor:
    """Tracks the best value of one metric; mode inferred from its name."""

    def __init__(self, monitor: str, min_delta: float = 0.0):
        self.monitor, self.min_delta, self.mode = monitor, min_delta, mode_for(monitor)
        self.best, self.best_epoch = (math.inf if self.mode == "min" else -math.inf), 0

    def improved(self, value: float) -> bool:
        return value < self.best - self.min_delta if self.mode == "min" else value > self.best + self.min_delta

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_epoch = state["best"], state["best_epoch"]


class ModelCheckpoint(Callback, Monitor):
    """Writes `last.pt` every epoch and `best.pt` when the monitored metric improves."""

    def __init__(self, dirpath: Path, monitor: str = "val_loss"):
        Monitor.__init__(self, monitor)
        self.dir = Path(dirpath)

    def on_epoch_end(self, trainer, logs: dict) -> None:
        value = logs[self.monitor]
        if self.improved(value):
            self.best, self.best_epoch = value, logs["epoch"]
            trainer.save(self.dir / "best.pt")
            log.info("saved checkpoints/best.pt (epoch %d, %s=%.6g)", logs["epoch"], self.monitor, value)
        trainer.save(self.dir / "last.pt")

    # the best value so far goes into every checkpoint: a resumed run must not take its first epoch for the best
    state_dict = Monitor.state_dict
    load_state_dict = Monitor.load_state_dict


class EarlyStopping(Callback, Monitor):
    """Stops training when the monitored metric has not improved for `patience` epochs."""

    def __init__(self, monitor: str = "val_loss", patience: int = 5, min_delta: float = 0.0):
        Monitor.__init__(self, monitor, min_delta)
        self.patience, self.wait = patience, 0

    def on_epoch_end(self, trainer, logs: dict) -> None:
        if self.improved(logs[self.monitor]):
            self.best, self.best_epoch, self.wait = logs[self.monitor], logs["epoch"], 0
        else:
            self.wait += 1
            if self.wait >= self.patience:
                trainer.stop_reason = (f"early stopping: {self.monitor} has not improved for {self.patience} "
                                       f"epochs (best {self.best:.4g} at epoch {self.best_epoch})")

    def state_dict(self) -> dict:
        return {**Monitor.state_dict(self), "wait": self.wait}

    def load_state_dict(self, state: dict) -> None:
        Monitor.load_state_dict(self, state)
        self.wait = state["wait"]


class LoggerCallback(Callback):
    """Sends every epoch's metrics to each logger (console, JSONL, CSV, ...)."""

    def __init__(self, loggers: list):
        self.loggers = loggers

    def on_fit_start(self, trainer) -> None:
        for lg in self.loggers:
            lg.attach(trainer)
            lg.start(trainer.history)

    def on_epoch_end(self, trainer, logs: dict) -> None:
        for lg in self.loggers:
            lg.log_epoch(logs)

    def on_run_end(self, trainer, summary: dict) -> None:
        for lg in self.loggers:
            lg.finish(summary)


class RunLogCallback(Callback):
    """Each epoch's metrics as one line of the run's log file (RUN/dlrun.log)."""

    def on_fit_start(self, trainer) -> None:
        log.info("training: epochs %d..%d", trainer.epoch + 1, trainer.epochs)

    def on_epoch_end(self, trainer, logs: dict) -> None:
        log.info("epoch %d: %s", logs["epoch"], " ".join(
            f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}" for k, v in logs.items() if k != "epoch"))
