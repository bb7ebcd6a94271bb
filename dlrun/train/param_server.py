"""`trainer.strategy=param_server`: asynchronous SGD with a central parameter server (seed 002's Downpour SGD), on
torch.distributed.rpc as in PyTorch's tutorial "Implementing a Parameter Server Using Distributed RPC Framework".

Rank 0 is the server: its loop's model and optimizer are the run's, and it does not train. Ranks 1..N-1 are the
workers, each over its shard of the epoch (the epoch is split among the workers only). A worker's step is its own
forward and backward (with the trainer's clipping and checks), then one `rpc_sync` to the server, which applies the
gradients with its optimizer as soon as they arrive (one push at a time, under a lock; no worker waits for another)
and sends back its weights, which the worker copies into its model. The gradients were computed on the weights the
worker last pulled, which other workers may have updated since: the server counts those updates (the staleness)
and the epoch row reports their mean (`staleness`; 0 with one worker).

The epochs end together (`ParameterServerLoop.run_epoch`): every rank meets over the process group (alongside rpc:
the server's rpc threads keep serving while its main thread waits), the training sums come from the workers, rank 0
evaluates the validation split with the server's weights and sends the row to every rank, so that early stopping
decides the same everywhere. A worker that fails says so at that meeting and every rank stops with its message.
Signals are agreed at epochs' ends only (a worker cannot stop alone in the middle of one). Rank 0's checkpoints are
the server's model and optimizer: they resume in one process or under any strategy.

Tested on one machine (distributed.py's `Asynchronous` starts the rpc agent, its rendezvous on rank 0 at
MASTER_ADDR; several nodes should work where that address is reachable, untested); tensors travel through CPU
memory. A per-step schedule (scheduler.interval=step) steps with the server's updates, counted from
one process's batches per epoch (exact with one worker).
"""
from __future__ import annotations

import threading
import time

import torch
from torch.distributed import rpc

from dlrun.errors import DlrunError
from dlrun.train.distributed import RPC_SERVER, Asynchronous
from dlrun.train.loop import SupervisedLoop

_server: ParameterServerLoop | None = None  # rank 0's loop: what the rpc calls below reach, in rank 0's process


def _push(pulled_at: int, grads: list, buffers: list) -> tuple:
    """rpc, on the server: apply a worker's gradients, computed on the weights of step `pulled_at`; (step, weights)."""
    return _server.apply(pulled_at, grads, buffers)


class _PushPull:
    """What a worker's loop steps: `step()` sends the gradients to the server and takes its weights back. The rest
    (zero_grad, param_groups, the GradScaler's bookkeeping, state) is the worker's own optimizer's, unused otherwise."""

    def __init__(self, local: torch.optim.Optimizer, loop: ParameterServerLoop):
        self.local, self.loop = local, loop

    def __getattr__(self, name: str):
        return getattr(self.local, name)

    def step(self, closure=None) -> None:
        self.loop.push()


class ParameterServerLoop(SupervisedLoop):
    """The supervised loop as the server (rank 0) or a worker (ranks 1..N-1) of `param_server`."""

    strategy: Asynchronous

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.server = self.strategy.group.main
        self.lock = threading.Lock()  # the server's: one update at a time
        self.stale = [0, 0]  # the server's: this epoch's summed staleness and pushes
        self.pulled_at = 0  # a worker's: the server step of the weights it holds
        if self.server:
            global _server
            _server = self
        else:
            self.optimizer = _PushPull(self.optimizer, self)

    # ---- the server's side (rpc threads) ---------------------------------------------------------------
    def weights(self) -> tuple:
        """(step, parameters, buffers), copied on the CPU (held by the caller: the lock)."""
        return (self.step, [p.detach().to("cpu", copy=True) for p in self.model.parameters()],
                [b.detach().to("cpu", copy=True) for b in self.model.buffers()])

    def apply(self, pulled_at: int, grads: list, buffers: list) -> tuple:
        with self.lock, torch.no_grad():
            for p, g in zip(self.model.parameters(), grads):
                p.grad = None if g is None else g.to(self.device)
            for b, new in zip(self.model.buffers(), buffers):  # batch-norm statistics: the last worker's
                b.copy_(new)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            if self.scheduler is not None and self.scheduler_interval == "step":
                self.scheduler.step()
            self.stale[0] += self.step - pulled_at
            self.stale[1] += 1
            self.strategy.pushed()
            self.step += 1
            return self.weights()

    # ---- a worker's side -------------------------------------------------------------------------------
    def push(self) -> None:
        """The gradients to the server, its weights back (the worker's optimizer step)."""
        grads = [None if p.grad is None else p.grad.detach().cpu() for p in self.model.parameters()]
        buffers = [b.detach().cpu() for b in self.model.buffers()]
        self._take(rpc.rpc_sync(RPC_SERVER, _push, args=(self.pulled_at, grads, buffers)))

    def _take(self, reply: tuple) -> None:
        self.pulled_at, params, buffers = reply
        with torch.no_grad():
            for p, w in zip(self.model.parameters(), params):
                p.copy_(w)
            for b, w in zip(self.model.buffers(), buffers):
                b.copy_(w)

    # ---- an epoch --------------------------------------------------------------------------------------
    def run_epoch(self, epoch: int) -> dict:
        t0, lr = time.perf_counter(), self.optimizer.param_groups[0]["lr"]
        start = [None]
        if self.server:
            with self.lock:
                start[0] = self.weights()
        # every epoch starts from the server's weights; this also waits for rank 0 (its loop built, state loaded)
        torch.distributed.broadcast_object_list(start, src=0)
        report = {"sums": [0.0, 0, 0.0], "skips": 0, "error": None}  # the server trains nothing: zeros
        failure = None
        if not self.server:
            self._take(start[0])
            try:
                train, _, _ = self._train_epoch(epoch)
                report.update(sums=self.strategy.sums, skips=train.get("nonfinite_skips", 0))
            except Exception as exc:  # said at the meeting, so that no rank waits for this one
                failure = exc
                report["error"] = (str(exc) or type(exc).__name__, getattr(exc, "exit_code", 1))
        reports = self.strategy.gather(report)  # the epoch's end: every rank meets here
        for rank, r in enumerate(reports):
            if r["error"]:
                if failure is not None:
                    raise failure
                raise DlrunError(f"worker rank {rank} failed: {r['error'][0]}", exit_code=r["error"][1])
        row = [None]
        if self.server:
            try:
                row[0] = self._row(reports, lr, time.perf_counter() - t0)
            except Exception as exc:  # the workers hear it rather than wait
                row[0], failure = {"error": str(exc) or type(exc).__name__}, exc
        torch.distributed.broadcast_object_list(row, src=0)
        if "error" in row[0]:
            raise failure or DlrunError(f"the parameter server failed: {row[0]['error']}", exit_code=1)
        self.epoch_step, self._partial = 0, self._fresh()
        return row[0]

    def _row(self, reports: list[dict], lr: float, seconds: float) -> dict:
        """The server's epoch row: the workers' training sums, validation with its weights, the staleness."""
        loss_sum, count, hits = (sum(column) for column in zip(*(r["sums"] for r in reports)))
        val = self.evaluate(self.data.val, whole=True)
        if self.scheduler is not None and self.scheduler_interval == "epoch":
            plateau = isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
            self.scheduler.step(val["loss"]) if plateau else self.scheduler.step()
        row = {"step": self.step, "train_loss": loss_sum / count}
        if self.task.classification:
            row["train_accuracy"] = hits / count
        if self.skip_nonfinite:
            row["nonfinite_skips"] = sum(r["skips"] for r in reports)
        with self.lock:
            staleness, self.stale = self.stale[0] / max(self.stale[1], 1), [0, 0]
            exchange = self.strategy.report()
        return {**row, **{f"val_{k}": v for k, v in val.items()}, "lr": lr, "epoch_time": seconds,
                "staleness": staleness, **exchange}

    def agreed_signal(self, signum: int | None) -> int | None:
        """Trainer.fit's, after each epoch: the one place where the ranks agree on a signal."""
        return self.strategy.agree(signum)

    def load_state_dict(self, state: dict) -> None:
        if state.get("epoch_step"):
            raise DlrunError("this checkpoint was written in the middle of an epoch; trainer.strategy=param_server "
                             "resumes from an epoch's end (checkpoints/best.pt, or finish the epoch under the "
                             "strategy that wrote it).")
        super().load_state_dict(state)
