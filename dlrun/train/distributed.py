"""One training across processes, on torch.distributed (seed 002, section 9's strategies).

Two ways in, one result:
- `torchrun --nproc_per_node=N $(which dlrun) ...` (or several nodes with --nnodes/--rdzv-endpoint): torchrun
  starts the processes and sets RANK/WORLD_SIZE; each one is a `dlrun` that `join`s the group.
- `dlrun trainer.devices=N ...`: the run's own process starts N workers through torch's elastic launcher
  (`launch`), each with its own process group and a free port, so every job of a `-m` sweep is its own group.

In the group, every rank trains on its own shard of each epoch's order (dlrun/data/loader.py), rank 0 alone writes
(logs, metrics, checkpoints, plots, summary.json) and tests. How the ranks stay in step is the strategy's:

| trainer.strategy | what is exchanged | when |
|---|---|---|
| ddp | gradients, all-reduced by `DistributedDataParallel` during backward | every step |
| local_sgd | parameters, averaged by torch's `PeriodicModelAverager` (parameter averaging) | every `average_every` steps |
| param_server | a worker's gradients to rank 0, the server's weights back (torch.distributed.rpc; asynchronous SGD) | each worker's every step, when it is ready |

`param_server` (`Asynchronous` here, its loop in dlrun/train/param_server.py): rank 0 is the server and does not
train; ranks 1..N-1 are the workers, whose shards split the epoch among themselves. Tested on one machine.
"""
from __future__ import annotations

import dataclasses
import datetime
import logging
import os
import signal
import time
import uuid
import warnings
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from dlrun.errors import DlrunError, tracebacks_wanted
from dlrun.train.run_folder import LAUNCHED_ENV, continue_hint
TIMEOUT = datetime.timedelta(minutes=10)  # a rank that stops answering ends the group after this


@dataclasses.dataclass(frozen=True)
class Group:
    """This process's place in the run's process group."""

    rank: int
    world: int
    local_rank: int

    @property
    def main(self) -> bool:
        return self.rank == 0


def environment() -> Group | None:
    """The group torchrun or `launch` set up for this process (RANK, WORLD_SIZE), or None for one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    return Group(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def is_main_process() -> bool:
    """Whether this process is rank 0 of its group, or alone (read from the environment, before joining)."""
    group = environment()
    return group is None or group.main


def join(device: torch.device) -> tuple[Group | None, torch.device]:
    """Join the group of this process's environment (gloo on the CPU, NCCL on CUDA): (group, this rank's device).
    A rendezvous that fails (a port in use, an unreachable master) is a one-line error."""
    group = environment()
    if group is None or dist.is_initialized():
        return group, _rank_device(device, group)
    device = _rank_device(device, group)
    backend = "nccl" if device.type == "cuda" else "gloo"
    try:
        dist.init_process_group(backend, timeout=TIMEOUT, device_id=device if device.type == "cuda" else None)
    except (RuntimeError, ValueError, OSError) as exc:
        where = f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"
        raise DlrunError(f"rank {group.rank} could not join the process group at {where} ({first_line(exc)}); check "
                         "that the port is free and the address reachable from every node.", exit_code=1) from None
    return group, device


def agree_on_folder(run_dir: Path, device_name: str, claim) -> Path:
    """Under torchrun every rank is a `dlrun` that chose its own run folder (a timestamp): rank 0 claims its own
    (`claim()`) and every rank takes that one. A claim refused on rank 0 stops all: the others quietly."""
    from dlrun.train.device import resolve_device

    group, _ = join(resolve_device(device_name))
    message = [None]
    if group.main:
        try:
            claim()
            message = [str(run_dir)]
        except DlrunError as exc:
            message = [("error", exc.exit_code)]
            dist.broadcast_object_list(message, src=0)
            raise
    dist.broadcast_object_list(message, src=0)
    if isinstance(message[0], tuple):
        raise SystemExit(message[0][1])  # rank 0 said why
    return Path(message[0])


def _rank_device(device: torch.device, group: Group | None) -> torch.device:
    if group is None or device.type != "cuda":
        return device
    torch.cuda.set_device(group.local_rank)
    return torch.device("cuda", group.local_rank)


def leave() -> None:
    """Leave the group, then the rpc agent if param_server started one. The group goes first: a rank still
    waiting in a collective for this one fails at once instead of after TIMEOUT, and reaches its own `leave`."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _stop_rpc()


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def size_in_bytes(model: nn.Module) -> int:
    """The bytes of a model's trained parameters: what one exchange of its gradients or weights moves."""
    return sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)


# ---- the strategies --------------------------------------------------------------------------------------------
class Strategy:
    """How the processes of a run stay in step. This base is one process: nothing to exchange."""

    world = 1

    def wrap(self, model: nn.Module) -> nn.Module:
        """What the training step's forward calls (the model itself, or a wrapper that syncs gradients)."""
        return model

    def after_step(self, model: nn.Module) -> None:
        """After each optimizer step (parameter averaging)."""

    def end_epoch(self, model: nn.Module) -> None:
        """After an epoch's steps, before validation: every rank must hold the model that is validated and saved."""

    def sum(self, values: list[float]) -> list[float]:
        """The values summed over all ranks (an epoch's loss and sample counts)."""
        return values

    def agreed_signal(self, signum: int | None) -> int | None:
        """A signal any rank has received, so that all stop at the same step."""
        return signum

    def gather(self, obj) -> list:
        """`obj` of every rank, in rank order."""
        return [obj]

    @property
    def shard(self) -> tuple[int, int]:
        """(index, count) of this rank's shard of each epoch (dlrun/data/loader.py's Batches)."""
        return 0, 1

    def report(self) -> dict:
        """What the epoch's row says of the exchange (and the counters start again)."""
        return {}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None: ...


class Synchronous(Strategy):
    """`ddp`: DistributedDataParallel all-reduces the gradients during backward, every step."""

    def __init__(self, group: Group, device: torch.device, slow_rank_delay_ms: float = 0.0):
        self.group, self.world, self.device = group, group.world, device
        # a test knob: this rank works slower (the slowest-worker effect of seed 002)
        self.delay = slow_rank_delay_ms / 1000 if group.rank == group.world - 1 else 0.0
        self.exchanged = 0  # bytes of tensors this rank put into collectives since the last report

    def wrap(self, model: nn.Module) -> nn.Module:
        ids = [self.device.index] if self.device.type == "cuda" else None
        self.model_bytes = size_in_bytes(model)
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def after_step(self, model: nn.Module) -> None:
        self.exchanged += self.model_bytes  # every gradient, all-reduced once per step
        if self.delay:
            time.sleep(self.delay)

    def report(self) -> dict:
        """`exchanged_mb`: the payload this rank all-reduced in the epoch (the algorithm moves about twice that
        per rank on the wire: a ring all-reduce is a reduce-scatter and an all-gather)."""
        row, self.exchanged = {"exchanged_mb": self.exchanged / 1e6}, 0
        return row

    def sum(self, values: list[float]) -> list[float]:
        t = torch.tensor(values, dtype=torch.float64, device=self._comm_device())
        dist.all_reduce(t)
        return t.tolist()

    def agreed_signal(self, signum: int | None) -> int | None:
        t = torch.tensor([signum or 0], device=self._comm_device())
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return int(t) or None

    def gather(self, obj) -> list:
        out = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    @property
    def shard(self) -> tuple[int, int]:
        return self.group.rank, self.group.world

    def _comm_device(self) -> torch.device:
        return self.device if self.device.type == "cuda" else torch.device("cpu")


class ParameterAveraging(Synchronous):
    """`local_sgd`: each rank steps on its own gradients; torch's PeriodicModelAverager averages the parameters
    every `average_every` steps (no communication in between: the seed's parameter averaging)."""

    def __init__(self, group: Group, device: torch.device, average_every: int, slow_rank_delay_ms: float = 0.0):
        super().__init__(group, device, slow_rank_delay_ms)
        from torch.distributed.algorithms.model_averaging.averagers import PeriodicModelAverager

        with warnings.catch_warnings():  # period 1 is DDP's result at more cost; allowed, to show they agree
            warnings.simplefilter("ignore", UserWarning)
            self.averager = PeriodicModelAverager(period=average_every, warmup_steps=0)

    def wrap(self, model: nn.Module) -> nn.Module:
        for p in model.parameters():  # every rank starts from rank 0's weights, as DDP does
            dist.broadcast(p.data, src=0)
        self.model_bytes = size_in_bytes(model)
        return model

    def after_step(self, model: nn.Module) -> None:
        if self.delay:
            time.sleep(self.delay)
        averaging = (self.averager.step - self.averager.warmup_steps) % self.averager.period == 0
        self.averager.average_parameters(model.parameters())
        self.exchanged += self.model_bytes if averaging else 0  # the parameters, every `period` steps

    def end_epoch(self, model: nn.Module) -> None:
        from torch.distributed.algorithms.model_averaging.utils import average_parameters

        average_parameters(iter(model.parameters()), dist.group.WORLD)  # one model to validate and save
        self.exchanged += self.model_bytes

    def state_dict(self) -> dict:
        return {"averager_step": self.averager.step}

    def load_state_dict(self, state: dict) -> None:
        self.averager.step = state.get("averager_step", self.averager.step)


class Asynchronous(Synchronous):
    """`param_server`'s side of the process group (its rpc side and loop: dlrun/train/param_server.py). Rank 0 is
    the server and evaluates whole splits; the workers (ranks 1..N-1) shard each epoch among themselves. They meet
    over the group only at an epoch's end, so a worker's sums stay its own until then (`sums`) and a signal waits
    for that meeting (`agree`). Starts the rpc agent (`_start_rpc`), which `leave` stops."""

    def __init__(self, group: Group, device: torch.device, slow_rank_delay_ms: float = 0.0,
                 checkpoint_every_steps: int | None = None):
        if checkpoint_every_steps:  # said by every rank at once, before the rpc agent starts
            raise DlrunError("trainer.checkpoint_every_steps is not available with trainer.strategy=param_server: its "
                             "workers step asynchronously, so there is no common mid-epoch state; it checkpoints at "
                             "each epoch's end.")
        super().__init__(group, device, slow_rank_delay_ms)  # the last rank is a worker: only it is slowed
        self.sums: list[float] = []  # a worker's (loss sum, samples, hits) of its last epoch
        self.pending: int | None = None  # a signal that arrived in the middle of an epoch
        _start_rpc(group)

    @property
    def shard(self) -> tuple[int, int]:
        return (0, 1) if self.group.main else (self.group.rank - 1, self.group.world - 1)

    def wrap(self, model: nn.Module) -> nn.Module:
        self.model_bytes = size_in_bytes(model)
        return model  # the server's weights reach the workers through rpc

    def after_step(self, model: nn.Module) -> None:
        if self.delay:  # the exchange is the server's to count: `pushed`
            time.sleep(self.delay)

    def pushed(self) -> None:
        """On the server, per worker's step: its gradients in, the weights out (`report`'s exchanged_mb)."""
        self.exchanged += 2 * self.model_bytes

    def sum(self, values: list[float]) -> list[float]:
        self.sums = list(values)
        return values

    def agreed_signal(self, signum: int | None) -> int | None:
        """After each step: a worker cannot stop alone, so the signal waits for the epoch's end."""
        self.pending = self.pending or signum
        return None

    def agree(self, signum: int | None) -> int | None:
        """At an epoch's end: a signal any rank has received."""
        return super().agreed_signal(signum or self.pending)


RPC_SERVER = "server"  # rank 0's rpc name; the workers are worker1, worker2, ...
_rpc_running: list[bool] = []  # [True] while this process's rpc agent runs


def _start_rpc(group: Group) -> None:
    """Every rank joins the rpc agent. Its rendezvous is a store of its own on rank 0 (MASTER_ADDR), at a port free
    there, named to the others over the group: it does not collide with the group's store on MASTER_PORT."""
    import socket

    from torch.distributed import rpc

    port = [None]
    if group.main:
        with socket.socket() as probe:
            probe.bind(("", 0))
            port[0] = probe.getsockname()[1]
    dist.broadcast_object_list(port, src=0)
    where = f"{os.environ.get('MASTER_ADDR', 'localhost')}:{port[0]}"
    options = rpc.TensorPipeRpcBackendOptions(init_method=f"tcp://{where}", rpc_timeout=TIMEOUT.total_seconds())
    try:
        with warnings.catch_warnings():  # torch's own use of a deprecated ProcessGroup call
            warnings.simplefilter("ignore", UserWarning)
            rpc.init_rpc(RPC_SERVER if group.main else f"worker{group.rank}", rank=group.rank,
                         world_size=group.world, rpc_backend_options=options)
    except (RuntimeError, ValueError, OSError) as exc:
        raise DlrunError(f"rank {group.rank} could not start param_server's rpc agent at {where} "
                         f"({first_line(exc)}).", exit_code=1) from None
    _rpc_running.append(True)
    import atexit

    atexit.register(_stop_rpc)  # under torchrun nothing calls `leave`


def _stop_rpc() -> None:
    """Wait for every rank's agent to get here (no request is cut short), then stop this one."""
    if not _rpc_running:
        return
    from torch.distributed import rpc

    _rpc_running.pop()
    try:
        rpc.shutdown(graceful=True, timeout=TIMEOUT.total_seconds())
    except RuntimeError:
        pass  # a rank that never came: this agent is stopped anyway


def strategy_for(settings, group: Group | None, device: torch.device) -> Strategy:
    """The run's strategy (trainer.strategy) for this group; one process gets the base."""
    if settings.strategy == "param_server" and (group is None or group.world < 2):
        raise DlrunError("trainer.strategy=param_server needs a server and at least one worker: trainer.devices >= 2 "
                         "(or torchrun --nproc_per_node >= 2).")
    if group is None:
        return Strategy()
    if settings.strategy == "param_server":
        return Asynchronous(group, device, settings.slow_rank_delay_ms, settings.checkpoint_every_steps)
    if settings.strategy == "local_sgd":
        return ParameterAveraging(group, device, settings.average_every, settings.slow_rank_delay_ms)
    return Synchronous(group, device, settings.slow_rank_delay_ms)


# ---- starting the processes ------------------------------------------------------------------------------------
def check_devices(devices: int, device: torch.device, batch_size) -> None:
    """What makes trainer.devices impossible, said before any process starts."""
    if devices <= 1:
        return
    if device.type == "cuda":
        have, what = torch.cuda.device_count(), "CUDA GPUs"
    else:
        have, what = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(), "CPU cores"
    if devices > have:
        raise DlrunError(f"trainer.devices={devices} but this machine has {have} {what} for this run; use at most "
                         f"{have} (one process per {what[:-1]}).")
    if batch_size == "full":
        raise DlrunError("trainer.batch_size=full is one batch of the whole split; with trainer.devices > 1 each "
                         "process needs its own batches: give an integer batch size (per process).")


def launch(cfg: dict, run_dir: Path, overrides: list[str], sweep_job: bool, devices: int, entrypoint):
    """Start `devices` workers through torch's elastic launcher on this machine (a free port, its own run id),
    wait for them and return rank 0's (summary, history). `entrypoint(cfg, run_dir, overrides, sweep_job)` runs in
    each (dlrun/train/pipeline.py's `rank_worker`). A worker that dies ends the group; the error names it."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=devices, run_id=uuid.uuid4().hex,
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0, monitor_interval=0.2,
                          start_method="spawn")
    os.environ[LAUNCHED_ENV] = str(Path(run_dir).resolve())
    if not tracebacks_wanted():  # the launcher logs a worker's death with a traceback; dlrun says it in one line
        for name in list(logging.Logger.manager.loggerDict):
            if name.startswith(("torch.distributed.elastic", "torch.multiprocessing")):
                logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        results = elastic_launch(config, entrypoint)(cfg, str(run_dir), overrides, sweep_job)
    except SignalException as exc:  # the launcher passed the signal on to the workers, which saved and stopped
        return interrupted(run_dir, exc.sigval)
    except ChildFailedError as exc:
        raise DlrunError(f"{describe_failure(exc)}; the other processes were stopped. {resumable(run_dir)}",
                         exit_code=1) from None
    finally:
        os.environ.pop(LAUNCHED_ENV, None)
    outcome = results[0]
    if "error" in outcome:
        raise DlrunError(outcome["error"], exit_code=outcome["exit_code"])
    return outcome["summary"], outcome["history"]


def interrupted(run_dir: Path, signum: int) -> tuple[dict, list[dict]]:
    """What rank 0 wrote when a signal stopped the group (its summary.json), for the exit code and the caller."""
    from dlrun.sweep.ledger import read_summary

    summary = read_summary(run_dir) or {"status": "interrupted"}
    summary["signal"] = int(signum)
    if summary.get("status") == "completed":  # the signal came after the work
        summary.pop("signal")
    return summary, []


def describe_failure(exc) -> str:
    """'rank 1 (pid 123) was killed by SIGKILL' from the launcher's report."""
    parts = []
    for rank, failure in sorted(exc.failures.items()):
        code = failure.exitcode
        how = (f"was killed by {signal.Signals(-code).name}" if code < 0 and -code in signal.valid_signals()
               else f"exited with code {code}")
        parts.append(f"rank {rank} (pid {failure.pid}) {how}")
    return "; ".join(parts) or "a worker failed"


def resumable(run_dir: Path) -> str:
    if (Path(run_dir) / "checkpoints" / "last.pt").exists():
        return f"The last checkpoint is intact: continue with `{continue_hint(run_dir)}`."
    return f"No checkpoint was written yet: `{continue_hint(run_dir)}` starts it again."
