"""The one trainer: run a `Loop`'s epochs with callbacks, keep the history, save and restore the whole state,
and turn signals into a clean stop. What an epoch is belongs to the loop (dlrun/train/loop.py)."""
from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

from dlrun.train.callbacks import Callback
from dlrun.train.checkpoint import rng_state, save_checkpoint, set_rng_state
from dlrun.train.loggers import EpochProgress
from dlrun.train.loop import Interrupted, Loop, NonFiniteLoss


class Trainer:
    """`fit()` runs `loop` for `epochs` epochs; each epoch's row goes to the callbacks (checkpoints, early
    stopping, loggers). `state_dict()` is the loop's state and the trainer's (epoch, history, callbacks, every
    RNG), plus the run's `config` and `meta` (what it takes to use the model without the training data)."""

    def __init__(self, loop: Loop, epochs: int, run_dir: Path, callbacks: list[Callback] = (), console=None,
                 config: dict | None = None, meta: dict | None = None, writes: bool = True):
        self.loop, self.epochs, self.run_dir = loop, epochs, Path(run_dir)
        self.writes = writes  # False on the ranks other than 0 of a process group: rank 0 writes the checkpoints
        self.callbacks, self.config, self.meta = list(callbacks), config or {}, meta or {}
        self.progress = EpochProgress(console) if console is not None else None
        self.history: list[dict] = []
        self.epoch = 0  # epochs completed
        self.stop_reason: str | None = None
        self.signal: int | None = None  # a signal that arrived: the loop stops at the next step
        self._last_saved: tuple[int, int] | None = None  # (epochs done, steps into the next) of last.pt
        loop.bind(self)

    @property
    def model(self):
        return self.loop.model

    @property
    def step(self) -> int:
        return self.loop.step

    # ---- training ------------------------------------------------------------------------------
    def fit(self) -> list[dict]:
        for cb in self.callbacks:
            cb.on_fit_start(self)
        with self._signals():
            while self.epoch < self.epochs and self.stop_reason is None:
                row = {"epoch": self.epoch + 1, **self.loop.run_epoch(self.epoch + 1)}
                self.epoch += 1
                self.history.append(row)
                for cb in self.callbacks:
                    cb.on_epoch_end(self, row)
                self.signal = self.loop.agreed_signal(self.signal)  # every rank stops after the same epoch
                if self.signal is not None:
                    raise Interrupted(self.signal)
        for cb in self.callbacks:
            cb.on_fit_end(self)
        return self.history

    def end(self, summary: dict) -> None:
        """The run is over (its summary written or about to be): every callback hears it."""
        for cb in self.callbacks:
            cb.on_run_end(self, summary)

    def kept(self) -> str:
        """Which checkpoint a failure leaves behind, for its message."""
        last = self.run_dir / "checkpoints" / "last.pt"
        if not last.exists():
            return "no checkpoint was written yet"
        epoch, steps = self._last_saved or (self.epoch, 0)
        return f"the last good checkpoint is {last} (epoch {epoch}{f' and {steps} steps of epoch {epoch + 1}' if steps else ''})"

    # ---- state ---------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {**self.loop.state_dict(), "epoch": self.epoch, "history": self.history,
                "callbacks": {type(cb).__name__: cb.state_dict() for cb in self.callbacks},
                "rng": rng_state(), "config": self.config, "meta": self.meta}

    def load_state_dict(self, state: dict) -> None:
        self.loop.load_state_dict(state)
        self.epoch, self.history = state["epoch"], list(state["history"])
        saved = state["callbacks"]  # by class name: a resume may turn early stopping on or off
        if isinstance(saved, list):  # checkpoints of dlrun <= 0.1.0: in the order of the callbacks
            saved = {type(cb).__name__: st for cb, st in zip(self.callbacks, saved)}
        for cb in self.callbacks:
            if type(cb).__name__ in saved:
                cb.load_state_dict(saved[type(cb).__name__])
        set_rng_state(state["rng"])
        self._last_saved = (self.epoch, self.loop.epoch_step)

    def save(self, path: Path) -> None:
        """Write the whole state; weights that a non-finite gradient has reached are never written."""
        if not self.loop.finite():
            raise NonFiniteLoss(f"the weights became non-finite by optimizer step {self.step} (a non-finite "
                                f"gradient); {self.kept()}. Try a smaller optimizer.lr or trainer.max_grad_norm.")
        if not self.writes:
            return
        save_checkpoint(self.state_dict(), path)
        if Path(path).name == "last.pt":
            self._last_saved = (self.epoch, self.loop.epoch_step)

    def _signals(self):
        """SIGINT/SIGTERM/SIGUSR1: finish the current step, save, stop. A second SIGINT aborts at once."""
        trainer = self

        class _Ctx:
            def __enter__(self):
                self.old = {}
                if threading.current_thread() is not threading.main_thread():
                    return self
                for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1):
                    self.old[sig] = signal.signal(sig, self.handle)
                return self

            def handle(self, signum, frame):
                if trainer.signal is not None:
                    if signum == signal.SIGINT:
                        raise KeyboardInterrupt
                    return
                trainer.signal = signum
                notice = (f"{signal.Signals(signum).name} received: finishing the current step and saving "
                          "(Ctrl-C again aborts at once)\n")
                if trainer.writes and not (trainer.progress and trainer.progress.interrupt_notice(notice)):
                    os.write(2, notice.encode())  # (a live bar shows it on its own line; other ranks say nothing)

            def __exit__(self, *exc):
                for sig, old in self.old.items():
                    signal.signal(sig, old)

        return _Ctx()
