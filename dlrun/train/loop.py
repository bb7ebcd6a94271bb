"""What `Trainer.fit` runs, one epoch at a time: a `Loop`. The supervised loop here trains over a dataset's
batches and validates; an environment-step loop (deep Q-learning) is another, and reuses the trainer's
callbacks, loggers, checkpoints, signals and resume as they are.

Read `SupervisedLoop` top to bottom: `run_epoch` -> `_train_epoch` -> `_step`. Speed rules, each with its reason:
- batches are slices of tensors already on the device (dlrun/data/loader.py: no DataLoader, no per-sample Python);
- each step writes its loss and predictions into epoch-long device buffers (three small ops) that are
  summed once per `log_every` steps, so the GPU never waits and the CPU does little per step;
- a non-finite loss makes those sums non-finite, and only then is the buffer searched for the step
  (`on_nonfinite=skip` must decide before each update, so it reads the device once per step);
- `precision=bf16|fp16` runs forward and loss under autocast (half the memory traffic; fp16 adds a
  GradScaler so small gradients do not underflow); `channels_last` feeds convolutions NHWC, the
  layout tensor cores want.
"""
from __future__ import annotations

import abc
import contextlib
import math
import time

import torch
from torch import nn

from dlrun.data import DataBundle, Split
from dlrun.data.loader import Batches
from dlrun.errors import DlrunError
from dlrun.models.base import aux_loss, updates_itself
from dlrun.tasks.base import Task
from dlrun.train.distributed import Strategy

AMP_DTYPES = {"32": None, "bf16": torch.bfloat16, "fp16": torch.float16}  # trainer.precision


class NonFiniteLoss(DlrunError):
    exit_code = 1


class Interrupted(Exception):
    """SIGINT/SIGTERM/SIGUSR1 arrived; the run saved its state and stops."""

    def __init__(self, signum: int):
        import signal

        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class Loop(abc.ABC):
    """One epoch of training and its evaluation, behind `Trainer.fit`. A loop owns the model, the optimizer and
    whatever else its epochs need, and saves and restores it through `state_dict`; the trainer owns the
    epochs, callbacks, history, signals and checkpoint files. A subclass implements the three abstract methods."""

    model: nn.Module
    step: int = 0  # optimizer steps taken in the run
    epoch_step: int = 0  # steps taken in the unfinished epoch (non-zero only in a mid-epoch checkpoint)

    def bind(self, trainer) -> None:
        """The trainer this loop runs under: its signal flag, progress display and mid-epoch saves."""
        self.trainer = trainer

    @abc.abstractmethod
    def run_epoch(self, epoch: int) -> dict:
        """Train epoch `epoch` (1-based) and evaluate: the epoch's metrics row (`step`, `train_*`, `val_*`, ...)."""

    @abc.abstractmethod
    def state_dict(self) -> dict:
        """Everything the loop needs to continue exactly where it is (model, optimizer, step, RNG-free state)."""

    @abc.abstractmethod
    def load_state_dict(self, state: dict) -> None:
        """Restore what `state_dict` returned."""

    def example_input(self) -> torch.Tensor | None:
        """One input as the model takes it (for a model graph), or None."""
        return None

    def agreed_signal(self, signum: int | None) -> int | None:
        """The signal to stop for: this process's own, or in a process group any rank's."""
        return signum

    def finite(self) -> bool:
        """Whether every weight is finite (weights a non-finite gradient reached are never saved)."""
        params = list(self.model.parameters())
        return not params or bool(torch.stack([torch.isfinite(p).all() for p in params]).all())


def _move(records: dict | None, device) -> dict | None:
    """An epoch's records (see SupervisedLoop._records) on another device."""
    if records is None:
        return None
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in records.items()}


class SupervisedLoop(Loop):
    """Epochs over a dataset's training batches, then a validation pass: a task's loss, one optimizer."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, task: Task, data: DataBundle,
                 batches: Batches, settings, scheduler=None, scheduler_interval: str = "epoch", augment=None,
                 strategy: Strategy | None = None):
        self.model, self.optimizer, self.task, self.data, self.batches = model, optimizer, task, data, batches
        self.strategy = strategy or Strategy()  # more than one process: how they stay in step
        self.forward = self.strategy.wrap(model)  # what a training step calls (DDP syncs gradients in backward)
        self.settings, self.device = settings, batches.device
        self.scheduler, self.scheduler_interval = scheduler, scheduler_interval
        self.augment = augment or None  # per-batch, on the device, training steps only
        self.skip_nonfinite = settings.on_nonfinite == "skip"
        self.own_update = updates_itself(model)  # the GAN's two steps: read once, not every step
        self.amp_dtype = AMP_DTYPES[str(settings.precision)]
        self.scaler = torch.amp.GradScaler(self.device.type) if self.amp_dtype is torch.float16 else None
        self.memory_format = torch.channels_last if settings.channels_last else None
        # L1/L2 as the seeds write them: lambda/n * sum|w| and lambda/(2n) * sum w^2, weights only (no biases)
        self.penalised = [p for p in model.parameters() if p.dim() > 1 and p.requires_grad]
        self.step, self.epoch_step, self._partial = 0, 0, self._fresh()
        self.trainer = None

    # ---- an epoch ------------------------------------------------------------------------------
    def run_epoch(self, epoch: int) -> dict:
        train, lr, seconds = self._train_epoch(epoch)
        self.strategy.end_epoch(self.model)
        val = self.evaluate(self.data.val)
        if self.scheduler is not None and self.scheduler_interval == "epoch":
            plateau = isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
            self.scheduler.step(val["loss"]) if plateau else self.scheduler.step()
        self.epoch_step, self._partial = 0, self._fresh()
        return {"step": self.step, **train, **{f"val_{k}": v for k, v in val.items()}, "lr": lr, "epoch_time": seconds,
                **self.strategy.report()}

    def _fresh(self) -> dict:
        """The unfinished epoch: its per-step records (device), skipped steps and seconds (host)."""
        return {"records": None, "skips": 0, "seconds": 0.0}

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
                                f"(optimizer step {self.step - steps + bad} of the run); {self.trainer.kept()}. Try a "
                                "smaller optimizer.lr, trainer.max_grad_norm, or trainer.on_nonfinite=skip.")
        return loss_sum

    def _train_epoch(self, epoch: int) -> tuple[dict, float, float]:
        """One epoch of steps. Each step writes its loss and predictions into epoch-long device buffers
        (three small ops, no host read); the buffers are summed every `log_every` steps and at the end."""
        self.model.train()
        split, start, progress = self.data.train, self.epoch_step, self.trainer.progress
        total, bs, every = self.batches.count(split), self.batches.size(split), self.settings.checkpoint_every_steps
        order = self.batches.order(split, epoch)
        rec = self._partial["records"] or self._records(total)
        skips = self._partial["skips"]
        lr = self.optimizer.param_groups[0]["lr"]
        if progress:
            progress.start(epoch, total, start)
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
                            rec["preds"] = torch.full((len(order), *pred.shape[1:]), -1, dtype=pred.dtype,
                                                      device=self.device)
                        rec["preds"][(i - 1) * bs:(i - 1) * bs + len(y)] = pred
                logged = i % self.settings.log_every == 0 or i == total
                if logged:
                    loss_sum = self._checked_loss_sum(rec, i, epoch)
                    if progress and sum(rec["sizes"][:i]):
                        progress.update(i, loss_sum / sum(rec["sizes"][:i]))
                signal = self.trainer.signal = self.strategy.agreed_signal(self.trainer.signal)
                if i < total and (signal is not None or (taken is not None and every and self.step % every == 0)):
                    if not logged:
                        self._checked_loss_sum(rec, i, epoch)  # never save weights that a bad step has touched
                    self._save_mid_epoch(i, rec, skips, time.perf_counter() - t0)
                    if signal is not None:
                        raise Interrupted(signal)
        finally:
            if progress:
                progress.stop()
        loss_sum = self._checked_loss_sum(rec, i, epoch)
        if self.device.type == "cuda":
            torch.cuda.synchronize()  # so epoch_time measures the work, not the queueing
        seconds = self._partial["seconds"] + time.perf_counter() - t0
        hits = 0.0
        if self.task.classification and rec["preds"] is not None:  # None: every step was skipped
            labels = split.y[order[:len(rec["preds"])].to(split.y.device)].to(self.device)
            hits = self.task.hits(rec["preds"], labels).sum().item()
        loss_sum, count, hits = self.strategy.sum([loss_sum, sum(rec["sizes"]), hits])  # over all ranks
        if not count:
            raise NonFiniteLoss(f"every training step of epoch {epoch} had a non-finite loss or gradient and was "
                                f"skipped ({skips} steps); check the data and optimizer.lr.")
        out = {"train_loss": loss_sum / count}
        if self.task.classification:
            out["train_accuracy"] = hits / count
        if self.skip_nonfinite:
            out["nonfinite_skips"] = skips
        return out, lr, seconds

    def _step(self, x: torch.Tensor, y: torch.Tensor):
        """One update: (loss record, outputs), the record NaN when the gradient norm was not finite;
        None when on_nonfinite=skip skipped the step."""
        s = self.settings
        x = self._input(x)
        if self.own_update:  # its own update rule
            return self._stepped(self.model.train_step(self.augment(x) if self.augment else x, self.optimizer), None)
        y = self.task.target(x, y)  # reconstruction: the clean input, whatever augmentation does to x
        buffers = [b.clone() for b in self.model.buffers()] if self.skip_nonfinite else None
        with self._autocast():
            out = self.forward(self.augment(x) if self.augment else x)
            loss = self._loss(out, y)
        objective = loss + self._penalty() if (s.l1 or s.l2) else loss
        self.optimizer.zero_grad(set_to_none=True)
        (self.scaler.scale(objective) if self.scaler else objective).backward()
        record = loss.detach()
        if s.max_grad_norm or s.clip_value or self.skip_nonfinite:
            params = [p for p in self.model.parameters() if p.grad is not None]
            if self.scaler:
                self.scaler.unscale_(self.optimizer)  # clip and check the true gradients
        if s.max_grad_norm or (self.skip_nonfinite and not self.scaler):  # the norm before any clipping
            norm = nn.utils.get_total_norm([p.grad for p in params])
            if not self.scaler:  # under fp16 an overflowing gradient is the GradScaler's to skip
                record = record + 0 * norm  # 0 * norm is NaN exactly when the norm is not finite
        if self.skip_nonfinite and not torch.isfinite(record):  # one device read per step, in this mode only
            self.optimizer.zero_grad(set_to_none=True)
            for b, saved in zip(self.model.buffers(), buffers):
                b.copy_(saved)  # e.g. batch-norm statistics the bad batch has touched
            return None
        if s.clip_value:
            nn.utils.clip_grad_value_(params, s.clip_value)
        if s.max_grad_norm:
            if s.clip_value:
                norm = nn.utils.get_total_norm([p.grad for p in params])
            nn.utils.clip_grads_with_norm_(params, s.max_grad_norm, norm)
        if self.scaler:  # skips the update when the scaled gradients overflowed, then adapts the scale
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        return self._stepped(record, out.detach())

    def _stepped(self, record: torch.Tensor, out: torch.Tensor | None):
        """After an update: the per-step schedule, the step count."""
        self.strategy.after_step(self.model)
        if self.scheduler is not None and self.scheduler_interval == "step":
            self.scheduler.step()
        self.step += 1
        return record, out

    def _loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The task's loss plus the model's own term, if its forward set one (a VAE's KL; Keras' add_loss)."""
        loss = self.task.loss_fn(out, y)
        aux = aux_loss(self.model)
        return loss if aux is None else loss + aux

    def _input(self, x: torch.Tensor) -> torch.Tensor:
        """A raw batch as the model takes it: normalised float, NHWC when channels_last."""
        x = self.data.prepare(x)
        return x.contiguous(memory_format=self.memory_format) if self.memory_format and x.dim() == 4 else x

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp_dtype else contextlib.nullcontext()

    def _penalty(self) -> torch.Tensor:
        s, n = self.settings, len(self.data.train)
        l1 = sum(p.abs().sum() for p in self.penalised) * (s.l1 / n) if s.l1 else 0.0
        l2 = sum(p.pow(2).sum() for p in self.penalised) * (s.l2 / (2 * n)) if s.l2 else 0.0
        return l1 + l2

    @torch.no_grad()
    def evaluate(self, split: Split, outputs: list | None = None, whole: bool = False) -> dict:
        """Mean loss (and accuracy) over a split, read from the device once; `outputs` collects (out, target).
        In a process group each rank evaluates its share and the sums are added up (`whole`: all of it, here)."""
        self.model.eval()
        sums, count = torch.zeros(2, device=self.device), 0
        for x, y in self.batches(split, self.batches.evaluation_order(split, whole)):
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
        if not whole:
            loss_sum, correct, count = self.strategy.sum([loss_sum, correct, count])
        out = {"loss": loss_sum / count}
        if self.task.classification:
            out["accuracy"] = correct / count
        return out

    def score(self, split: Split, seed: int) -> tuple[dict, dict, list]:
        """The test pass: the split evaluated with the RNG at `seed` (a model that draws, a GAN, draws the same),
        then the task's metrics. (metrics, other summary entries, [(outputs, targets)] per batch). `dlrun predict
        --split` calls it too, so it reproduces summary.json."""
        torch.manual_seed(seed)
        outputs: list = []
        row = self.evaluate(split, outputs, whole=True)
        metrics, extra = self.task.metrics(torch.cat([o for o, _ in outputs]).cpu(),
                                           torch.cat([y for _, y in outputs]).cpu(), self.data.classes)
        return {**row, **metrics}, extra, outputs

    def agreed_signal(self, signum: int | None) -> int | None:
        return self.strategy.agreed_signal(signum)

    def example_input(self) -> torch.Tensor:
        split = self.data.val if len(self.data.val) else self.data.train
        return self._input(split.x[:1].to(self.device))

    # ---- state ---------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "step": self.step, "epoch_step": self.epoch_step, "world": self.strategy.world,
            "partial": {**self._partial, "records": _move(self._partial["records"], "cpu")},
            "strategy": self.strategy.state_dict(),
            # a mid-epoch checkpoint of a process group: every rank's unfinished epoch, each resumes its own
            **({"partials": self._partials} if self.strategy.world > 1 and self.epoch_step else {}),
        }

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.step, self.epoch_step = state["step"], state["epoch_step"]
        saved_world = state.get("world", 1)
        if self.epoch_step and saved_world != self.strategy.world:
            raise DlrunError(f"this checkpoint was written in the middle of an epoch by {saved_world} process(es); "
                             f"it resumes with as many (trainer.devices={saved_world}), or resume from an "
                             "epoch's end (checkpoints/best.pt, or a checkpoint without trainer.checkpoint_every_steps).")
        partial = state["partials"][self.batches.rank] if "partials" in state else state["partial"]
        self._partial = {**partial, "records": _move(partial["records"], self.device)}
        self.strategy.load_state_dict(state.get("strategy") or {})

    def _save_mid_epoch(self, steps_done: int, rec: dict, skips: int, seconds: float) -> None:
        """last.pt in the middle of an epoch: the epoch's records and position go in with the rest."""
        before = self.epoch_step, self._partial
        self.epoch_step = steps_done
        self._partial = {"records": rec, "skips": skips, "seconds": self._partial["seconds"] + seconds}
        if self.strategy.world > 1:  # every rank's records go into rank 0's file
            mine = {**self._partial, "records": _move(rec, "cpu")}
            self._partials = self.strategy.gather(mine)
        try:
            self.trainer.save(self.trainer.run_dir / "checkpoints" / "last.pt")
        finally:
            self.epoch_step, self._partial = before  # the epoch goes on with its own buffers
