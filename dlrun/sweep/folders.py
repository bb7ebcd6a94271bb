"""Which folder each job of a sweep runs in: the folder of an earlier job with the same overrides (to resume or
redo it), a scratch folder when that job completed (so its folder is not touched), or a new one.

`hydra.sweep.subdir` is `${dlrun_job_dir:${hydra.job.num}}`, the resolver registered here."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import yaml
from omegaconf import OmegaConf

from dlrun.sweep.ledger import RUN_ID_ENV, read_summary

STATE: dict = {}  # this process's sweep folder, for the final table



SKIPPED: dict[str, Path] = {}  # scratch folder -> the completed job's folder it stands in for

CHOSEN: dict[tuple, str] = {}  # (launch, sweep dir, job key) -> subdir, so the resolver is stable

def job_key(overrides) -> tuple[str, ...]:
    """A job's identity across launches: its overrides, sorted, without Hydra's and sweep.* (the policy)."""
    return tuple(sorted(str(o) for o in overrides if not str(o).lstrip("+~").startswith(("hydra.", "sweep."))))

def job_folders(sweep_dir: Path) -> dict[tuple, Path]:
    """Job folders already in the sweep folder, by job key, lowest number first."""
    found: dict[tuple, Path] = {}
    for f in sorted(sweep_dir.glob("*/.hydra/overrides.yaml"), key=lambda p: (len(p.parts[-3]), p.parts[-3])):
        try:
            found.setdefault(job_key(yaml.safe_load(f.read_text()) or []), f.parent.parent)
        except (OSError, yaml.YAMLError):
            continue
    return found

def _claim(sweep_dir: Path, num: int) -> str:
    """A new folder: NUM if free, else the next free number. mkdir is atomic, so parallel jobs never share one."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    n = num
    while True:
        try:
            (sweep_dir / str(n)).mkdir()
            return str(n)
        except FileExistsError:
            n = max([n, *(int(p.name) for p in sweep_dir.iterdir() if p.name.isdigit())]) + 1

def job_dir(num, _root_) -> str:
    """`${dlrun_job_dir:${hydra.job.num}}`: where this job runs, relative to hydra.sweep.dir.

    The folder of an earlier job with the same overrides (to resume or redo it), a scratch folder
    outside the sweep when that job completed (so its folder is not touched), or a new folder."""
    sweep_dir = Path(str(_root_.hydra.sweep.dir))
    key = job_key(_root_.hydra.overrides.task)
    memo = (os.environ.get(RUN_ID_ENV), str(sweep_dir.resolve()), key)
    if memo not in CHOSEN:
        folder = job_folders(sweep_dir).get(key) if sweep_dir.is_dir() else None
        if folder is not None and (read_summary(folder) or {}).get("status") == "completed":
            scratch = tempfile.mkdtemp(prefix="dlrun-skip-")
            SKIPPED[scratch] = folder
            CHOSEN[memo] = scratch
        else:
            CHOSEN[memo] = folder.name if folder is not None else _claim(sweep_dir, int(num))
    return CHOSEN[memo]

OmegaConf.register_new_resolver("dlrun_job_dir", job_dir, replace=True)

def clear(run_dir: Path) -> None:
    """Remove a failed attempt's outputs before redoing it; Hydra's .hydra/ and the log stay."""
    for p in run_dir.iterdir():
        if p.name != ".hydra" and p.suffix != ".log":
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
