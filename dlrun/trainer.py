"""The one trainer: train and validate each epoch, then test with the best weights.

Read it top to bottom: `fit` -> `_train_epoch` -> `_step`. Speed rules, each with its reason:
- batches are slices of tensors already on the device (no DataLoader, no per-sample Python);
- running sums stay on the device and are read once per `log_every` steps, so the GPU never waits;
- a non-finite loss is recorded on the device (first bad step) and checked at those same reads.
"""
from __future__ import annotations

import math
import signal
import threading
import time
from pathlib import Path

import torch
from torch import nn

from dlrun.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from dlrun.data import DataBundle, Split
from dlrun.errors import DlrunError
from dlrun.loggers import EpochProgress
from dlrun.tasks import Task


class Interrupted(Exception):
    """SIGINT/SIGTERM arrived; the run saved its state and stops."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class NonFiniteLoss(DlrunError):
    exit_code = 1


class Trainer:
    def __init__(self, model: nn.Module, optimizer, scheduler, scheduler_interval: str, task: Task,
                 data: DataBundle, *, epochs: int, batch_size, device: torch.device, run_dir: Path,
                 callbacks=(), console=None, seed: int = 0, log_every: int = 50, limit_batches: int | None = None,
                 in_memory: bool = True, num_workers: int = 0, max_grad_norm: float | None = None,
                 l1: float = 0.0, l2: float = 0.0, augment=None, config: dict | None = None):
        self.model, self.optimizer, self.task, self.data = model, optimizer, task, data
        self.scheduler, self.scheduler_interval = scheduler, scheduler_interval
        self.epochs, self.batch_size, self.device = epochs, batch_size, device
        self.run_dir, self.callbacks, self.seed = Path(run_dir), list(callbacks), seed
        self.log_every, self.limit_batches, self.max_grad_norm = log_every, limit_batches, max_grad_norm
        self.in_memory, self.num_workers, self.config = in_memory, num_workers, config or {}
        self.augment = augment or None  # per-batch, on the device, training steps only
        self.progress = EpochProgress(console) if console is not None else None
        # L1/L2 as the seeds write them: lambda/n * sum|w| and lambda/(2n) * sum w^2, weights only (no biases)
        self.l1, self.l2, self.n_train = l1, l2, len(data.train)
        self.penalised = [p for p in model.parameters() if p.dim() > 1 and p.requires_grad]
        self.history: list[dict] = []
        self.epoch = 0  # epochs completed
        self.step = 0  # optimizer steps taken
        self.epoch_step = 0  # steps taken in the unfinished epoch (non-zero only in a mid-epoch checkpoint)
        self._partial = self._fresh()  # running sums of the unfinished epoch
        self.stop_reason: str | None = None
        self._signal: int | None = None

    # ---- data ----------------------------------------------------------------------------------
    def _fresh(self) -> dict:
        """Running sums of an epoch: [loss_sum, correct] on the device; samples and seconds on the host."""
        return {"sums": torch.zeros(2, device=self.device), "count": 0, "seconds": 0.0}

    def _bs(self, n: int) -> int:
        return n if self.batch_size == "full" else int(self.batch_size)

    def num_batches(self, split: Split) -> int:
        nb = math.ceil(len(split) / self._bs(len(split)))
        return min(nb, self.limit_batches) if self.limit_batches else nb

    def batches(self, split: Split, epoch: int = 0, start: int = 0, shuffle: bool = False):
        """(x, y) batches on the device. The epoch's order depends only on (seed, epoch), so a resumed
        run regenerates it and skips the `start` batches already done."""
        n, bs, nb = len(split), self._bs(len(split)), self.num_batches(split)
        order = None
        if shuffle:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed * 100_003 + epoch))
        if self.in_memory:
            order = order.to(self.device) if order is not None else None
            for i in range(start, nb):
                idx = order[i * bs:(i + 1) * bs] if order is not None else slice(i * bs, (i + 1) * bs)
                yield split.x[idx], split.y[idx]
            return
        # DataLoader path for data kept on the host: worker processes, pinned memory, async copies.
        order = order if order is not None else torch.arange(n)
        chunks = [order[i * bs:(i + 1) * bs].tolist() for i in range(start, nb)]
        loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(split.x, split.y), batch_sampler=chunks,
                                             num_workers=self.num_workers, pin_memory=self.device.type == "cuda")
        for x, y in loader:
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    # ---- training ------------------------------------------------------------------------------
    def fit(self) -> list[dict]:
        for cb in self.callbacks:
            cb.on_fit_start(self)
        with self._signals():
            while self.epoch < self.epochs and self.stop_reason is None:
                epoch = self.epoch + 1
                train, lr, seconds = self._train_epoch(epoch)
                val = self.evaluate(self.data.val)
                row = {"epoch": epoch, "step": self.step, **train, **{f"val_{k}": v for k, v in val.items()},
                       "lr": lr, "epoch_time": seconds}
                if self.scheduler is not None and self.scheduler_interval == "epoch":
                    plateau = isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
                    self.scheduler.step(val["loss"]) if plateau else self.scheduler.step()
                self.epoch, self.epoch_step, self._partial = epoch, 0, self._fresh()
                self.history.append(row)
                for cb in self.callbacks:
                    cb.on_epoch_end(self, row)
                if self._signal is not None:
                    raise Interrupted(self._signal)
        return self.history

    def _train_epoch(self, epoch: int) -> tuple[dict, float, float]:
        self.model.train()
        total = self.num_batches(self.data.train)
        sums, count = self._partial["sums"].clone(), self._partial["count"]
        bad_step = torch.tensor(-1, device=self.device)
        lr = self.optimizer.param_groups[0]["lr"]
        if self.progress:
            self.progress.start(epoch, total, self.epoch_step)
        t0, i = time.perf_counter(), self.epoch_step
        try:
            for i, (x, y) in enumerate(self.batches(self.data.train, epoch, self.epoch_step, shuffle=True),
                                       start=self.epoch_step + 1):
                loss, correct = self._step(x, y)
                sums[0] += loss.detach() * len(y)
                sums[1] += correct
                count += len(y)
                bad_step = torch.where((bad_step < 0) & ~torch.isfinite(loss), self.step, bad_step)
                if i % self.log_every == 0 or i == total:
                    self._check_finite(bad_step, epoch, i)
                    if self.progress:
                        self.progress.update(i, sums[0].item() / count)
                if self._signal is not None and i < total:
                    self._save_mid_epoch(i, sums, count, time.perf_counter() - t0)
                    raise Interrupted(self._signal)
        finally:
            if self.progress:
                self.progress.stop()
        self._check_finite(bad_step, epoch, i)
        if self.device.type == "cuda":
            torch.cuda.synchronize()  # so epoch_time measures the work, not the queueing
        seconds = self._partial["seconds"] + time.perf_counter() - t0
        loss_sum, correct = sums.tolist()
        out = {"train_loss": loss_sum / count}
        if self.task.classification:
            out["train_accuracy"] = correct / count
        return out, lr, seconds

    def _step(self, x: torch.Tensor, y: torch.Tensor):
        x = self.data.prepare(x)
        out = self.model(self.augment(x) if self.augment else x)
        loss = self.task.loss_fn(out, y)
        objective = loss + self._penalty() if (self.l1 or self.l2) else loss
        self.optimizer.zero_grad(set_to_none=True)
        objective.backward()
        if self.max_grad_norm:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.max_grad_norm)
        self.optimizer.step()
        if self.scheduler is not None and self.scheduler_interval == "step":
            self.scheduler.step()
        self.step += 1
        correct = self.task.correct(out.detach(), y) if self.task.classification else 0
        return loss, correct

    def _penalty(self) -> torch.Tensor:
        l1 = sum(p.abs().sum() for p in self.penalised) * (self.l1 / self.n_train) if self.l1 else 0.0
        l2 = sum(p.pow(2).sum() for p in self.penalised) * (self.l2 / (2 * self.n_train)) if self.l2 else 0.0
        return l1 + l2

    def _check_finite(self, bad_step: torch.Tensor, epoch: int, i: int) -> None:
        bad = int(bad_step)
        if bad >= 0:
            last = self.run_dir / "checkpoints" / "last.pt"
            keep = f"the last good checkpoint is {last} (epoch {self.epoch})" if last.exists() else "no checkpoint was written yet"
            raise NonFiniteLoss(f"the training loss became non-finite at epoch {epoch}, step {i - (self.step - bad)} "
                                f"(optimizer step {bad} of the run); {keep}. Try a smaller optimizer.lr or trainer.max_grad_norm.")

    @torch.no_grad()
    def evaluate(self, split: Split, outputs: list | None = None) -> dict:
        """Mean loss (and accuracy) over a split, read from the device once; `outputs` collects (out, y)."""
        self.model.eval()
        sums, count = torch.zeros(2, device=self.device), 0
        for x, y in self.batches(split):
            out = self.model(self.data.prepare(x))
            if outputs is not None:
                outputs.append((out, y))
            sums[0] += self.task.loss_fn(out, y) * len(y)
            if self.task.classification:
                sums[1] += self.task.correct(out, y)
            count += len(y)
        loss_sum, correct = sums.tolist()
        out = {"loss": loss_sum / count}
        if self.task.classification:
            out["accuracy"] = correct / count
        return out

    # ---- state ---------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "epoch": self.epoch, "step": self.step, "epoch_step": self.epoch_step,
            "partial": {**self._partial, "sums": self._partial["sums"].cpu()},
            "history": self.history,
            "callbacks": [cb.state_dict() for cb in self.callbacks],
            "rng": rng_state(),
            "config": self.config,
        }

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.epoch, self.step, self.epoch_step = state["epoch"], state["step"], state["epoch_step"]
        self._partial = {**state["partial"], "sums": state["partial"]["sums"].to(self.device)}
        self.history = list(state["history"])
        for cb, cb_state in zip(self.callbacks, state["callbacks"]):
            cb.load_state_dict(cb_state)
        set_rng_state(state["rng"])

    def save(self, path: Path) -> None:
        save_checkpoint(self.state_dict(), path)

    def resume(self, path: Path) -> None:
        self.load_state_dict(load_checkpoint(path, map_location=self.device))

    def _save_mid_epoch(self, steps_done: int, sums: torch.Tensor, count: int, seconds: float) -> None:
        self.epoch_step = steps_done
        self._partial = {"sums": sums, "count": count, "seconds": self._partial["seconds"] + seconds}
        self.save(self.run_dir / "checkpoints" / "last.pt")

    def _signals(self):
        """SIGINT/SIGTERM: finish the current step, save, stop. A second SIGINT aborts at once."""
        trainer = self

        class _Ctx:
            def __enter__(self):
                self.old = {}
                if threading.current_thread() is not threading.main_thread():
                    return self
                for sig in (signal.SIGINT, signal.SIGTERM):
                    self.old[sig] = signal.signal(sig, self.handle)
                return self

            def handle(self, signum, frame):
                if trainer._signal is not None and signum == signal.SIGINT:
                    raise KeyboardInterrupt
                trainer._signal = signum

            def __exit__(self, *exc):
                for sig, old in self.old.items():
                    signal.signal(sig, old)

        return _Ctx()
