"""`dlrun.run([...])`: the CLI's config tree and trainer, for notebooks and tests."""
from __future__ import annotations

import time
from pathlib import Path

from omegaconf import open_dict

from dlrun.config.composition import compose
from dlrun.config.overrides import is_hydra_override, override_key, requote, run_dir_of
from dlrun.config.resume import resume_overrides
from dlrun.train import run_folder


def run(overrides: list[str], run_dir: str | None = None) -> dict:
    """Compose `overrides` like the CLI, train, and return {"summary", "history", "run_dir"}."""
    from dlrun.train.pipeline import train

    overrides = resume_overrides(requote(list(overrides)))
    run_dir = Path(run_dir or run_dir_of(overrides) or
                   f"outputs/api/{time.strftime('%Y-%m-%d/%H-%M-%S')}-{time.time_ns() % 10**6:06d}")
    if not any(override_key(o) == "resume" for o in overrides):
        run_folder.refuse_if_taken(run_dir)
    overrides = [o for o in overrides if not is_hydra_override(o)]
    cfg = compose(overrides)
    with open_dict(cfg):
        del cfg["hydra"]  # Hydra's own settings: not part of the run's config
    run_folder.lock(run_dir)
    try:
        summary, history = train(cfg, run_dir, overrides=overrides)
    finally:
        run_folder.unlock(run_dir)  # a notebook goes on after the run
    return {"summary": summary, "history": history, "run_dir": str(run_dir)}
