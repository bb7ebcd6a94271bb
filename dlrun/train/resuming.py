"""A resume's state: the checkpoint it continues from, what it may change (dlrun/config/resume.py), and the new
learning rate applied from the next step."""
from __future__ import annotations

import os
from pathlib import Path

import torch
from omegaconf import DictConfig
from rich.console import Console
from rich.markup import escape

from dlrun.config.resume import changes
from dlrun.train.checkpoint import load_checkpoint
from dlrun.train.run_folder import log


def resume_state(cfg: DictConfig, run_dir: Path, device: torch.device, config: dict, console: Console):
    """(checkpoint state, allowed config changes) of a resume; (None, {}) for a new run, or for a resume of a
    run that never wrote a checkpoint (it starts again from its first step)."""
    if cfg.resume is None:
        return None, {}
    source = Path(os.path.expanduser(str(cfg.resume)))  # RUN_DIR (its last.pt) or RUN_DIR/checkpoints/X.pt
    path = source if source.is_file() else run_dir / "checkpoints" / "last.pt"
    if not path.exists() and not source.is_file():
        console.print(f"[yellow]{escape(str(run_dir))} has no checkpoint yet: the run starts again from its first "
                      "step[/yellow]", soft_wrap=True, highlight=False)
        return None, {}
    state = load_checkpoint(path, map_location=device)  # read and verified before anything else
    return state, changes(state.get("config") or {}, config, int(state.get("epoch", 0)), run_dir)


def apply_learning_rate(optimizer: torch.optim.Optimizer, scheduler, step: int, changed: dict,
                        console: Console) -> None:
    """A resume with a new optimizer.lr: every parameter group's rate (and a schedule's base rates) scaled by
    new/old, from the next optimizer step on; said on the console and in the log."""
    if "optimizer.lr" not in changed:
        return
    old, new = changed["optimizer.lr"]
    ratio = new / old
    for group in optimizer.param_groups:
        group["lr"] *= ratio
        if "initial_lr" in group:
            group["initial_lr"] *= ratio
    for s in (scheduler._schedulers if isinstance(scheduler, torch.optim.lr_scheduler.SequentialLR) else [scheduler]):
        if s is not None and not isinstance(s, torch.optim.lr_scheduler.ReduceLROnPlateau):
            s.base_lrs = [b * ratio for b in s.base_lrs]
    note = f"optimizer.lr changed on resume: {old:g} -> {new:g}, from optimizer step {step + 1} on"
    console.print(f"[yellow]{escape(note)}[/yellow]", soft_wrap=True, highlight=False)
    log.info(note)
