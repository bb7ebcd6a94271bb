"""`dlrun.run([...])`: the CLI's config tree and trainer, for notebooks and tests."""
from __future__ import annotations

import time
from pathlib import Path

from omegaconf import OmegaConf

from dlrun.checkpoint import atomic_write
from dlrun.config import CONF_DIR, check_overrides, guard_run_dir, register_plugin_configs, resume_overrides


def run(overrides: list[str], run_dir: str | None = None) -> dict:
    """Compose `overrides` like the CLI, train, and return {"summary", "history", "run_dir"}."""
    from hydra import compose, initialize_config_dir

    from dlrun.runner import train

    register_plugin_configs()
    overrides = resume_overrides(list(overrides))
    dirs = [o.split("=", 1)[1] for o in overrides if o.startswith("hydra.run.dir=")]
    run_dir = Path(run_dir or (dirs[-1] if dirs else f"outputs/api/{time.strftime('%Y-%m-%d/%H-%M-%S')}-{time.time_ns() % 10**6:06d}"))
    overrides = [o for o in overrides if not o.startswith("hydra.")]
    guard_run_dir([f"hydra.run.dir={run_dir}", *overrides])
    check_overrides(overrides)
    with initialize_config_dir(CONF_DIR, version_base="1.3", job_name="dlrun"):
        cfg = compose("config", overrides=overrides)
    if cfg.resume is None:  # what Hydra writes for a CLI run
        for name, obj in (("config.yaml", cfg), ("overrides.yaml", OmegaConf.create(overrides))):
            text = OmegaConf.to_yaml(obj)
            atomic_write(run_dir / ".hydra" / name, lambda f, t=text: f.write(t.encode()))
    summary, history = train(cfg, run_dir)
    return {"summary": summary, "history": history, "run_dir": str(run_dir)}
