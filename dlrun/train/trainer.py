"""The one trainer: train and validate each epoch, then test with the best weights.

Read it top to bottom: `fit` -> `_train_epoch` -> `_step`. Speed rules, each with its reason:
- batches are slices of tensors already on the device (no DataLoader, no per-sample Python);
- each step writes its loss and predictions into epoch-long device buffers (three small ops) that are
  summed once per `log_every` steps, so the GPU never waits and the CPU does little per step;
- a non-finite loss makes those sums non-finite, and only then is the buffer searched for the step
  (`on_nonfinite=skip` must decide before each update, so it reads the device once per step);
- `precision=bf16|fp16` runs forward and loss under autocast (half the memory traffic; fp16 adds a
  GradScaler so small gradients do not underflow); `channels_last` feeds convolutions NHWC, the
  layout tensor cores want.
"""
from __future__ import annotations

import contextlib
import math
import os
import signal
import threading
import time
from pathlib import Path

import torch
from torch import nn

from dlrun.train.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from dlrun.data import DataBundle, Split
from dlrun.errors import DlrunError
from dlrun.train.loggers import EpochProgress
from dlrun.tasks.base import Task


AMP_DTYPES = {"32": None, "bf16": torch.bfloat16, "fp16": torch.float16}  # trainer.precision


def _move(records: dict | None, device) -> dict | None:
    """An epoch's records (see Trainer._records) on another device."""
    if records is None:
        return None
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in records.items()}


class Interrupted(Exception):
    """SIGINT/SIGTERM/SIGUSR1 arrived; the run saved its state and stops."""

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
                 l1: float = 0.0, l2: float = 0.0, augment=None, config: dict | None = None,
                 checkpoint_every_steps: int | None = None, on_nonfinite: str = "stop", clip_value: float | None = None,
                 precision: str = "32", channels_last: bool = False):
        self.model, self.optimizer, self.task, self.data = model, optimizer, task, data
        self.scheduler, self.scheduler_interval = scheduler, scheduler_interval
        self.epochs, self.batch_size, self.device = epochs, batch_size, device
        self.run_dir, self.callbacks, self.seed = Path(run_dir), list(callbacks), seed
        self.log_every, self.limit_batches, self.max_grad_norm = log_every, limit_batches, max_grad_norm
        self.in_memory, self.num_workers, self.config = in_memory, num_workers, config or {}
        self.checkpoint_every_steps, self.clip_value = checkpoint_every_steps, clip_value
        self.skip_nonfinite = on_nonfinite == "skip"
        self.own_step = hasattr(model, "train_step")  # a model with its own update rule (the GAN's two steps)
        self.augment = augment or None  # per-batch, on the device, training steps only
        self.amp_dtype = AMP_DTYPES[str(precision)]
        self.scaler = torch.amp.GradScaler(device.type) if self.amp_dtype is torch.float16 else None
        self.memory_format = torch.channels_last if channels_last else None
        self.progress = EpochProgress(console) if console is not None else None
        # L1/L2 as the seeds write them: lambda/n * sum|w| and lambda/(2n) * sum w^2, weights only (no biases)
        self.l1, self.l2, self.n_train = l1, l2, len(data.train)
        self.penalised = [p for p in model.parameters() if p.dim() > 1 and p.requires_grad]
        self.history: list[dict] = []
        self.epoch = 0  # epochs completed
        self.step = 0  # optimizer steps taken
        self.epoch_step = 0  # steps taken in the unfinished epoch (non-zero only in a mid-epoch checkpoint)
        self._partial = self._fresh()  # records of the unfinished epoch
        self.stop_reason: str | None = None
        self._signal: int | None = None
        self._loaders: dict[int, torch.utils.data.DataLoader] = {}  # the DataLoader path's, per split
        self._last_saved: tuple[int, int] | None = None  # (epochs done, steps into the next) of last.pt

    # ---- data ----------------------------------------------------------------------------------
    def _fresh(self) -> dict:
        """The unfinished epoch: its per-step records (device), skipped steps and seconds (host)."""
        return {"records": None, "skips": 0, "seconds": 0.0}

    def _bs(self, n: int) -> int:
        return n if self.batch_size == "full" else int(self.batch_size)

    def num_batches(self, split: Split) -> int:
        nb = math.ceil(len(split) / self._bs(len(split)))
        return min(nb, self.limit_batches) if self.limit_batches else nb

    def order(self, split: Split, epoch: int) -> torch.Tensor:
        """The epoch's shuffle: it depends only on (seed, epoch), so a resumed run regenerates it."""
        return torch.randperm(len(split), generator=torch.Generator().manual_seed(self.seed * 100_003 + epoch))

    def batches(self, split: Split, order: torch.Tensor | None = None, start: int = 0):
        """(x, y) batches on the device, in `order` (None: as stored), from batch `start` on."""
        n, bs, nb = len(split), self._bs(len(split)), self.num_batches(split)
        if self.in_memory:
            order = order.to(self.device) if order is not None else None
            for i in range(start, nb):
                idx = order[i * bs:(i + 1) * bs] if order is not None else slice(i * bs, (i + 1) * bs)
                yield split.x[idx], split.y[idx]
            return
        # DataLoader path for data kept on the host: worker processes, pinned memory, async copies.
        order = order if order is not None else torch.arange(n)
        loader = self._loader(split)
        loader.batch_sampler[:] = [order[i * bs:(i + 1) * bs].tolist() for i in range(start, nb)]
        for x, y in loader:  # a worker's death: see runner.train
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def _loader(self, split: Split) -> torch.utils.data.DataLoader:
        """One DataLoader per split for the whole run, so its workers start once (persistent_workers);
        its batch sampler is a list that `batches` refills with each pass's index batches."""
        if id(split) not in self._loaders:
            self._loaders[id(split)] = torch.utils.data.DataLoader(
                torch.utils.data.TensorDataset(split.x, split.y), batch_sampler=[], num_workers=self.num_workers,
                pin_memory=self.device.type == "cuda", persistent_workers=self.num_workers > 0,
                # its own generator: the workers' seed must not draw from the global RNG (a resume would diverge)
                generator=torch.Generator().manual_seed(self.seed))
        return self._loaders[id(split)]

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

    def _records(self, total: int) -> dict:
        """Epoch-long buffers: each step's mean loss (device), its sample count (host), predictions (device)."""
        return {"losses": torch.zeros(total, device=self.device), "sizes": [0] * total, "preds": None}

    def _checked_loss_sum(self, rec: dict, steps: int, epoch: int) -> float:
        """The summed training loss of the first `steps` steps (one device read); a non-finite step
        stops the run naming it."""
        sizes = torch.tensor(rec["sizes"][:steps], dtype=torch.float32, device=self.device)
        loss_sum = float((rec["losses"][:steps] * sizes).sum())
        if not math.isfinite(loss_sum):
            bad = int((~torch.isfinite(rec["losses"][:steps])).nonzero()[0]) + 1  # the epoch's first bad step
            raise NonFiniteLoss(f"the training loss or gradient became non-finite at epoch {epoch}, step {bad} "
                                f"(optimizer step {self.step - steps + bad} of the run); {self._kept()}. Try a "
                                "smaller optimizer.lr, trainer.max_grad_norm, or trainer.on_nonfinite=skip.")
        return loss_sum

    def _train_epoch(self, epoch: int) -> tuple[dict, float, float]:
        """One epoch of steps. Each step writes its loss and predictions into epoch-long device buffers
        (three small ops, no host read); the buffers are summed every `log_every` steps and at the end."""
        self.model.train()
        split, total, start = self.data.train, self.num_batches(self.data.train), self.epoch_step
        order = self.order(split, epoch)
        rec = self._partial["records"] or self._records(total)
        skips, bs = self._partial["skips"], self._bs(len(split))
        lr = self.optimizer.param_groups[0]["lr"]
        if self.progress:
            self.progress.start(epoch, total, start)
        t0, i = time.perf_counter(), start
        try:
            for i, (x, y) in enumerate(self.batches(split, order, start), start=start + 1):
                taken = self._step(x, y)
                if taken is None:  # on_nonfinite=skip: a non-finite loss or gradient; nothing was updated
                    skips += 1
                else:
                    rec["losses"][i - 1] = taken[0]
                    rec["sizes"][i - 1] = len(y)
                    if self.task.classification:
                        pred = self.task.predict(taken[1])
                        if rec["preds"] is None:  # -1 matches no label: skipped steps count as no sample
                            rec["preds"] = torch.full((len(split), *pred.shape[1:]), -1, dtype=pred.dtype,
                                                      device=self.device)
                        rec["preds"][(i - 1) * bs:(i - 1) * bs + len(y)] = pred
                if i % self.log_every == 0 or i == total:
                    loss_sum = self._checked_loss_sum(rec, i, epoch)
                    if self.progress and sum(rec["sizes"][:i]):
                        self.progress.update(i, loss_sum / sum(rec["sizes"][:i]))
                if i < total and (self._signal is not None or (
                        taken is not None and self.checkpoint_every_steps
                        and self.step % self.checkpoint_every_steps == 0)):
                    self._checked_loss_sum(rec, i, epoch)  # never save weights that a bad step has touched
                    self._save_mid_epoch(i, rec, skips, time.perf_counter() - t0)
                    if self._signal is not None:
                        raise Interrupted(self._signal)
        finally:
            if self.progress:
                self.progress.stop()
        loss_sum = self._checked_loss_sum(rec, i, epoch)
        if self.device.type == "cuda":
            torch.cuda.synchronize()  # so epoch_time measures the work, not the queueing
        seconds = self._partial["seconds"] + time.perf_counter() - t0
        count = sum(rec["sizes"])
        if not count:
            raise NonFiniteLoss(f"every training step of epoch {epoch} had a non-finite loss or gradient and was "
                                f"skipped ({skips} steps); check the data and optimizer.lr.")
        out = {"train_loss": loss_sum / count}
        if self.task.classification:
            labels = split.y[order[:len(rec["preds"])].to(split.y.device)].to(self.device)
            out["train_accuracy"] = self.task.hits(rec["preds"], labels).sum().item() / count
        if self.skip_nonfinite:
            out["nonfinite_skips"] = skips
        return out, lr, seconds

    def _step(self, x: torch.Tensor, y: torch.Tensor):
        """One update: (loss record, outputs), the record NaN when the gradient norm was not finite;
        None when on_nonfinite=skip skipped the step."""
        x = self._input(x)
        if self.own_step:
            return self._stepped(self.model.train_step(self.augment(x) if self.augment else x, self.optimizer), None)
        y = self.task.target(x, y)  # reconstruction: the clean input, whatever augmentation does to x
        buffers = [b.clone() for b in self.model.buffers()] if self.skip_nonfinite else None
        with self._autocast():
            out = self.model(self.augment(x) if self.augment else x)
            loss = self._loss(out, y)
        objective = loss + self._penalty() if (self.l1 or self.l2) else loss
        self.optimizer.zero_grad(set_to_none=True)
        (self.scaler.scale(objective) if self.scaler else objective).backward()
        record = loss.detach()
        if self.max_grad_norm or self.clip_value or self.skip_nonfinite:
            params = [p for p in self.model.parameters() if p.grad is not None]
            if self.scaler:
                self.scaler.unscale_(self.optimizer)  # clip and check the true gradients
        if self.max_grad_norm or (self.skip_nonfinite and not self.scaler):  # the norm before any clipping
            norm = nn.utils.get_total_norm([p.grad for p in params])
            if not self.scaler:  # under fp16 an overflowing gradient is the GradScaler's to skip
                record = record + 0 * norm  # 0 * norm is NaN exactly when the norm is not finite
        if self.skip_nonfinite and not torch.isfinite(record):  # one device read per step, in this mode only
            self.optimizer.zero_grad(set_to_none=True)
            for b, saved in zip(self.model.buffers(), buffers):
                b.copy_(saved)  # e.g. batch-norm statistics the bad batch has touched
            return None
        if self.clip_value:
            nn.utils.clip_grad_value_(params, self.clip_value)
        if self.max_grad_norm:
            if self.clip_value:
                norm = nn.utils.get_total_norm([p.grad for p in params])
            nn.utils.clip_grads_with_norm_(params, self.max_grad_norm, norm)
        if self.scaler:  # skips the update when the scaled gradients overflowed, then adapts the scale
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        return self._stepped(record, out.detach())

    def _stepped(self, record: torch.Tensor, out: torch.Tensor | None):
        """After an update: the per-step schedule, the step count."""
        if self.scheduler is not None and self.scheduler_interval == "step":
            self.scheduler.step()
        self.step += 1
        return record, out

    def _loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The task's loss plus the model's own term, if its forward set one (a VAE's KL; Keras' add_loss)."""
        loss = self.task.loss_fn(out, y)
        aux = getattr(self.model, "aux_loss", None)
        return loss if aux is None else loss + aux

    def _input(self, x: torch.Tensor) -> torch.Tensor:
        """A raw batch as the model takes it: normalised float, NHWC when channels_last."""
        x = self.data.prepare(x)
        return x.contiguous(memory_format=self.memory_format) if self.memory_format and x.dim() == 4 else x

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp_dtype else contextlib.nullcontext()

    def _penalty(self) -> torch.Tensor:
        l1 = sum(p.abs().sum() for p in self.penalised) * (self.l1 / self.n_train) if self.l1 else 0.0
        l2 = sum(p.pow(2).sum() for p in self.penalised) * (self.l2 / (2 * self.n_train)) if self.l2 else 0.0
        return l1 + l2

    def _kept(self) -> str:
        """Which checkpoint a failure leaves behind, for its message."""
        last = self.run_dir / "checkpoints" / "last.pt"
        if not last.exists():
            return "no checkpoint was written yet"
        epoch, steps = self._last_saved or (self.epoch, 0)
        return f"the last good checkpoint is {last} (epoch {epoch}{f' and {steps} steps of epoch {epoch + 1}' if steps else ''})"

    @torch.no_grad()
    def evaluate(self, split: Split, outputs: list | None = None) -> dict:
        """Mean loss (and accuracy) over a split, read from the device once; `outputs` collects (out, y)."""
        self.model.eval()
        sums, count = torch.zeros(2, device=self.device), 0
        for x, y in self.batches(split):
            x = self._input(x)
            y = self.task.target(x, y)
            with self._autocast():
                out = self.model(x)
            out = out.float()  # metrics and the loss in full precision
            if outputs is not None:
                outputs.append((out, y))
            sums[0] += self._loss(out, y) * len(y)
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
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "epoch": self.epoch, "step": self.step, "epoch_step": self.epoch_step,
            "partial": {**self._partial, "records": _move(self._partial["records"], "cpu")},
            "history": self.history,
            "callbacks": {type(cb).__name__: cb.state_dict() for cb in self.callbacks},
            "rng": rng_state(),
            "config": self.config,
        }

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.step, self.epoch_step = state["epoch"], state["step"], state["epoch_step"]
        self._partial = {**state["partial"], "records": _move(state["partial"]["records"], self.device)}
        self.history = list(state["history"])
        saved = state["callbacks"]  # by class name: a resume may turn early stopping on or off
        if isinstance(saved, list):  # checkpoints of dlrun <= 0.1.0: in the order of the callbacks
            saved = {type(cb).__name__: st for cb, st in zip(self.callbacks, saved)}
        for cb in self.callbacks:
            if type(cb).__name__ in saved:
                cb.load_state_dict(saved[type(cb).__name__])
        set_rng_state(state["rng"])
        self._last_saved = (self.epoch, self.epoch_step)

    def save(self, path: Path) -> None:
        """Write the whole state; weights that a non-finite gradient has reached are never written."""
        params = list(self.model.parameters())
        if params and not torch.stack([torch.isfinite(p).all() for p in params]).all():
            raise NonFiniteLoss(f"the weights became non-finite by optimizer step {self.step} (a non-finite "
                                f"gradient); {self._kept()}. Try a smaller optimizer.lr or trainer.max_grad_norm.")
        save_checkpoint(self.state_dict(), path)
        if Path(path).name == "last.pt":
            self._last_saved = (self.epoch, self.epoch_step)

    def resume(self, path: Path) -> None:
        self.load_state_dict(load_checkpoint(path, map_location=self.device))

    def _save_mid_epoch(self, steps_done: int, rec: dict, skips: int, seconds: float) -> None:
        """last.pt in the middle of an epoch: the epoch's records and position go in with the rest."""
        before = self.epoch_step, self._partial
        self.epoch_step = steps_done
        self._partial = {"records": rec, "skips": skips, "seconds": self._partial["seconds"] + seconds}
        try:
            self.save(self.run_dir / "checkpoints" / "last.pt")
        finally:
            self.epoch_step, self._partial = before  # the epoch goes on with its own buffers

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
                if trainer._signal is not None:
                    if signum == signal.SIGINT:
                        raise KeyboardInterrupt
                    return
                trainer._signal = signum
                notice = (f"{signal.Signals(signum).name} received: finishing the current step and saving "
                          "(Ctrl-C again aborts at once)\n")
                if not (trainer.progress and trainer.progress.interrupt_notice(notice)):  # a live bar: on a line of its own
                    os.write(2, notice.encode())

            def __exit__(self, *exc):
                for sig, old in self.old.items():
                    signal.signal(sig, old)

        return _Ctx()
