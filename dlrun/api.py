"""`dlrun.run([...])`: the CLI's config tree and trainer, for notebooks and tests."""
from __future__ import annotations

import time
from pathlib import Path

from omegaconf import open_dict

from dlrun import run_folder
from dlrun.config import compose, guard_run_dir, override_key, override_value, quote, requote
from dlrun.resume import resume_overrides


def run(overrides: list[str], run_dir: str | None = None) -> dict:
    """Compose `overrides` like the CLI, train, and return {"summary", "history", "run_dir"}."""
    from dlrun.runner import train

    overrides = resume_overrides(requote(list(overrides)))
    dirs = [override_value(o) for o in overrides if override_key(o) == "hydra.run.dir"]
    run_dir = Path(run_dir or (dirs[-1] if dirs else f"outputs/api/{time.strftime('%Y-%m-%d/%H-%M-%S')}-{time.time_ns() % 10**6:06d}"))
    overrides = [o for o in overrides if not o.startswith("hydra.")]
    guard_run_dir([f"hydra.run.dir={quote(str(run_dir))}", *overrides])
    cfg = compose(overrides)
    with open_dict(cfg):
        del cfg["hydra"]  # Hydra's own settings: not part of the run's config
    run_folder.lock(run_dir)
    try:
        summary, history = train(cfg, run_dir, overrides=overrides)
    finally:
        run_folder.unlock(run_dir)  # a notebook goes on after the run
    return {"summary": summary, "history": history, "run_dir": str(run_dir)}
