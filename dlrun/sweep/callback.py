"""dlrun's Hydra callback: the launching process learns its sweep folder, also when the jobs run in other
processes (joblib, SLURM), so the final table and exit code come from the ledger they write."""
from __future__ import annotations

from pathlib import Path

from hydra.experimental.callback import Callback

from dlrun.sweep.folders import STATE


class SweepDirCallback(Callback):
    """Hydra callback: tell the launching process its sweep folder, also when the jobs run in other
    processes (joblib, SLURM), so the final table and exit code come from the ledger they write."""

    def on_multirun_start(self, config, **kwargs) -> None:
        STATE["dir"] = Path(str(config.hydra.sweep.dir))
