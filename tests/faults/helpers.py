"""Run the real CLI in a subprocess with a fault patched into that process, and read what it left behind."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import torch

from conftest import ROOT

# A small deterministic run: 3 epochs of 40 steps, dropout (the RNG matters), a checkpoint every 15 steps.
TINY = ["logger=quiet", "trainer.summary=false", "trainer.deterministic=true", "trainer.epochs=3",
        "trainer.batch_size=32", "model.hidden=[32]", "model.dropout=0.2", "trainer.checkpoint_every_steps=15"]


def _env() -> dict:
    env = {**os.environ, "CI": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    return env


def patched_command(patch: str, *args: str) -> list[str]:
    """`dlrun ARGS` in a fresh Python that first runs `patch` (which may import dlrun and replace things)."""
    code = f"{textwrap.dedent(patch)}\nimport sys\nfrom dlrun.cli import main\nsys.argv = ['dlrun', *{list(args)!r}]\nmain()\n"
    return [sys.executable, "-c", code]


def run_patched(patch: str, *args: str, timeout: float = 240):
    return subprocess.run(patched_command(patch, *args), capture_output=True, text=True, timeout=timeout,
                          env=_env(), cwd=ROOT)


def popen_patched(patch: str, *args: str, stderr_file: Path):
    """Started, not awaited: for tests that send signals. stderr goes to a file the test can poll."""
    return subprocess.Popen(patched_command(patch, *args), cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL,
                            stderr=open(stderr_file, "w"))


def load(path: Path) -> dict:
    """A checkpoint read the way dlrun reads it (size and sha256 checked, weights_only)."""
    from dlrun.train.checkpoint import load_checkpoint

    return load_checkpoint(path)


def finite_weights(state: dict) -> bool:
    return all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def leftovers(folder: Path) -> list[str]:
    """Temp files an interrupted write would leave behind (there must be none)."""
    return [p.name for p in Path(folder).rglob(".*.tmp")]


def after_step(step: int, action: str) -> str:
    """A patch that runs `action` (Python; `self` is the trainer) right after optimizer step `step`."""
    return f"""
import os, signal
from dlrun.train.loop import SupervisedLoop as Trainer
_step = Trainer._step
def step_then_act(self, x, y):
    out = _step(self, x, y)
    if self.step == {step} and out is not None:
        {action}
    return out
Trainer._step = step_then_act
"""


def poison_losses(*calls: int) -> str:
    """A patch that makes the training loss NaN on the given training batches (1 = the run's first)."""
    return f"""
from dlrun.train.loop import SupervisedLoop as Trainer
_init = Trainer.__init__
def init(self, *a, **k):
    _init(self, *a, **k)
    loss_fn, seen = self.task.loss_fn, [0]
    def poisoned(out, y):
        loss = loss_fn(out, y)
        if self.model.training:
            seen[0] += 1
            if seen[0] in {set(calls)!r}:
                return loss * float("nan")
        return loss
    self.task.loss_fn = poisoned
Trainer.__init__ = init
"""
