"""The end of a launch: one table of every job (read from the ledger), the failures, the command to re-run."""
from __future__ import annotations

import os
import shlex
import time
from pathlib import Path

from dlrun.sweep.folders import STATE, job_folders, job_key
from dlrun.sweep.ledger import FINE, RUN_ID_ENV, append_ledger, final_metrics, read_ledger, read_summary

# ---- the end of a launch: one table of every job -----------------------------------------------------
def planned_jobs(overrides: list[str]) -> list[list[str]] | None:
    """The jobs a basic grid sweep will launch, in order (None when Hydra has to expand them itself)."""
    try:
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
        from hydra.core.override_parser.overrides_parser import OverridesParser

        parsed = OverridesParser.create().parse_overrides([o for o in overrides if not o.startswith("hydra")])
        return BasicSweeper.split_arguments(parsed, None)[0]
    except Exception:
        return None

def sweep_dir_of_launch() -> Path | None:
    if "dir" in STATE:
        return STATE["dir"]
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        return Path(HydraConfig.get().sweep.dir)
    return None

def _table_row(entry: dict, with_folder: bool) -> dict:
    """A ledger entry as a row of the final table: its best validation value and test metric under their
    own names (best_val_loss, and the task's headline test metric: test_miou, test_map_50, ..., else
    test_accuracy or test_loss), epochs, wall time."""
    m = entry.get("metrics") or {}
    best = {k: v for k, v in m.items() if k.startswith("best_") and k != "best_epoch" and v is not None}
    test = next(({k: m[k]} for k in (m.get("headline"), "test_accuracy", "test_loss") if k and m.get(k) is not None),
                {})
    wall = entry.get("wall_time")
    return {"job": entry["job"], **({"folder": entry.get("dir", "")} if with_folder else {}),
            "status": entry["status"], **best, **test, "epochs": m.get("epochs"),
            "time (s)": f"{wall:.1f}" if wall is not None else None}

def finish(argv: list[str], planned: list[list[str]] | None, stopped: str | None) -> int | None:
    """Print the table of this launch's jobs (read from the ledger) and return the sweep's exit code:
    0 only when every job completed (or had completed before). None when no sweep ran.

    `stopped` says why the launch ended early ("stop": sweep.on_failure=stop, "signal"); the planned
    jobs that never started are then listed as "not run"."""
    from dlrun.errors import print_error
    from dlrun.report.runs import overrides_dict
    from dlrun.report.tables import print_runs

    sweep_dir = sweep_dir_of_launch()
    if sweep_dir is None:
        return None
    launch = os.environ.get(RUN_ID_ENV)
    jobs = {e["job"]: e for e in read_ledger(sweep_dir) if e.get("launch") == launch}
    if stopped and planned:
        for num, ov in enumerate(planned):
            jobs.setdefault(num, {"job": num, "dir": "", "overrides": ov, "status": "not run"})
    if not jobs:
        return None
    rows = [jobs[n] for n in sorted(jobs)]
    with_folder = any(e.get("dir") not in ("", str(e["job"])) for e in rows)  # e.g. a skipped job's earlier folder
    print_runs(f"sweep {sweep_dir}: {len(rows)} jobs", [_table_row(e, with_folder) for e in rows],
               [overrides_dict(e["overrides"]) for e in rows])
    bad = [e for e in rows if e["status"] not in FINE]
    failed = [e for e in rows if e["status"] == "failed"]
    if failed:
        print_error(f"{len(failed)} job(s) of the sweep failed: "
                    + ", ".join(f"job {e['job']} ({' '.join(e['overrides'])})" for e in failed))
    if stopped == "stop":
        print_error(f"sweep.on_failure=stop: the sweep stopped at the first failure; "
                    f"{sum(e['status'] == 'not run' for e in rows)} job(s) not run")
    from dlrun.config.overrides import quote

    again = [a for a in argv if not a.startswith("hydra.sweep.dir=")] + [f"hydra.sweep.dir={quote(str(sweep_dir))}"]
    print("Re-run into the same folder to redo failed jobs, resume interrupted ones and run the rest"
          if bad else "The same command again (with new values, say) runs only what is not done yet", end="")
    print(f" (completed jobs are skipped):\n  dlrun {' '.join(shlex.quote(a) for a in again)}")
    print(f"Results: dlrun report {shlex.quote(str(sweep_dir))}")
    return 1 if bad else 0


def workers_died(exc: BaseException, planned: list[list[str]] | None, launched_at: float) -> bool:
    """A launcher's worker process was killed (joblib/loky's TerminatedWorkerError): every job that this launch
    started (Hydra wrote its .hydra/ files after `launched_at`; a folder left by an earlier launch does not count)
    and that has no ledger line yet is recorded as failed (killed), so the table shows it and a re-run redoes it
    (or resumes it from its last checkpoint). False for any other error."""
    from dlrun.errors import print_error

    if type(exc).__name__ != "TerminatedWorkerError":
        return False
    sweep_dir, launch = sweep_dir_of_launch(), os.environ.get(RUN_ID_ENV)
    if sweep_dir is None:
        return False
    done = {e["job"] for e in read_ledger(sweep_dir) if e.get("launch") == launch}
    folders = job_folders(sweep_dir)
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    for num, ov in enumerate(planned or []):
        folder = folders.get(job_key(ov))
        if num in done or folder is None or (folder / ".hydra" / "overrides.yaml").stat().st_mtime < launched_at:
            continue  # finished, or not started by this launch: "not run" in the table
        error = f"killed: the worker process running it died ({first})"
        append_ledger(sweep_dir, {"job": num, "dir": folder.name, "overrides": list(ov), "launch": launch,
                                  "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "status": "failed",
                                  "metrics": final_metrics(read_summary(folder)), "wall_time": None, "error": error})
        print_error(f"job {num} failed ({' '.join(ov)}): {error}")
    return True
