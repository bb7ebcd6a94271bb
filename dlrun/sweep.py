"""Sweeps that finish, resume and account for themselves: job folders, the ledger, the failure policy.

Every job of `dlrun -m ...` appends one line to SWEEP_DIR/ledger.jsonl when it ends (overrides,
status, final metrics, wall time, error). Jobs are matched across launches by their overrides, not by
their number, so re-running a command with the same `hydra.sweep.dir` skips the completed jobs (their
folders are not touched: Hydra writes that job's .hydra files into a scratch folder, removed at once),
redoes the failed ones and resumes the interrupted ones from checkpoints/last.pt in their own folders.

`hydra.sweep.subdir` is `${dlrun_job_dir:${hydra.job.num}}`, the resolver below, which picks the folder.
Nothing here imports torch until a job trains.
"""
from __future__ import annotations

import json
import math
import os
import shlex
import shutil
import tempfile
import time
import traceback
from pathlib import Path

import yaml
from hydra.experimental.callback import Callback
from omegaconf import OmegaConf, open_dict

LEDGER = "ledger.jsonl"
RUN_ID_ENV = "DLRUN_SWEEP_ID"  # one id per `dlrun -m` launch, inherited by launcher worker processes
FINE = ("completed", "skipped")  # statuses that leave the exit code at 0
STATE: dict = {}  # this process's sweep folder, for the final table


class SweepDirCallback(Callback):
    """Hydra callback: tell the launching process its sweep folder, also when the jobs run in other
    processes (joblib, SLURM), so the final table and exit code come from the ledger they write."""

    def on_multirun_start(self, config, **kwargs) -> None:
        STATE["dir"] = Path(str(config.hydra.sweep.dir))


_SKIPS: dict[str, Path] = {}  # scratch folder -> the completed job's folder it stands in for
_CHOSEN: dict[tuple, str] = {}  # (launch, sweep dir, job key) -> subdir, so the resolver is stable


class SweepStopped(BaseException):
    """sweep.on_failure=stop after a failure; a BaseException so it passes Hydra's launcher, which
    catches every Exception of a job."""


def job_key(overrides) -> tuple[str, ...]:
    """A job's identity across launches: its overrides, sorted, without Hydra's and sweep.* (the policy)."""
    return tuple(sorted(str(o) for o in overrides if not str(o).lstrip("+~").startswith(("hydra.", "sweep."))))


def read_ledger(sweep_dir) -> list[dict]:
    """The ledger's entries, oldest first; a line cut short by a crash is skipped."""
    path = Path(sweep_dir) / LEDGER
    if not path.exists():
        return []
    entries = []
    for line in path.read_text().splitlines():
        try:
            entries.append(json.loads(line))
        except ValueError:
            continue
    return entries


def append_ledger(sweep_dir, entry: dict) -> None:
    """One JSON line in a single O_APPEND write, so jobs running in parallel never interleave."""
    data = (json.dumps(entry, default=str) + "\n").encode()
    Path(sweep_dir).mkdir(parents=True, exist_ok=True)
    fd = os.open(Path(sweep_dir) / LEDGER, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_summary(folder: Path) -> dict | None:
    try:
        return json.loads((Path(folder) / "summary.json").read_text())
    except (OSError, ValueError):
        return None


def _job_folders(sweep_dir: Path) -> dict[tuple, Path]:
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
    if memo not in _CHOSEN:
        folder = _job_folders(sweep_dir).get(key) if sweep_dir.is_dir() else None
        if folder is not None and (read_summary(folder) or {}).get("status") == "completed":
            scratch = tempfile.mkdtemp(prefix="dlrun-skip-")
            _SKIPS[scratch] = folder
            _CHOSEN[memo] = scratch
        else:
            _CHOSEN[memo] = folder.name if folder is not None else _claim(sweep_dir, int(num))
    return _CHOSEN[memo]


OmegaConf.register_new_resolver("dlrun_job_dir", job_dir, replace=True)


def _finite(v):
    return v if not isinstance(v, float) or math.isfinite(v) else None


def final_metrics(summary: dict | None) -> dict:
    """What the ledger keeps of a summary: test metrics, the best validation value, the last epoch's row."""
    if not summary:
        return {}
    out = {k: _finite(v) for k, v in (summary.get("last_epoch") or {}).items()
           if k.startswith(("train_", "val_"))}
    out.update({k: _finite(v) for k, v in summary.items()
                if k.startswith("test_") and isinstance(v, (int, float)) and not isinstance(v, bool)})
    if summary.get("best_monitor"):
        out[f"best_{summary['best_monitor']}"] = _finite(summary.get("best_value"))
    out.update(epochs=summary.get("epochs_completed"), best_epoch=summary.get("best_epoch"))
    return out


def _clear(run_dir: Path) -> None:
    """Remove a failed attempt's outputs before redoing it; Hydra's .hydra/ and the log stay."""
    for p in run_dir.iterdir():
        if p.name != ".hydra" and p.suffix != ".log":
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()


def sweep_job(cfg, hc) -> dict | None:
    """One job of `dlrun -m`: skip, resume, redo or run it; append its ledger line; report a failure at once.

    Returns the job's summary (the earlier one for a skipped job), e.g. for a sweeper that optimises it."""
    from dlrun.errors import DlrunError, print_error

    run_dir, sweep_dir = Path(hc.runtime.output_dir), Path(hc.runtime.cwd, hc.sweep.dir)  # cwd: chdir=true
    STATE["dir"] = Path(hc.sweep.dir)
    overrides = list(hc.overrides.task)
    entry = {"job": hc.job.num, "dir": run_dir.name, "overrides": overrides,
             "launch": os.environ.get(RUN_ID_ENV), "time": time.strftime("%Y-%m-%dT%H:%M:%S")}

    earlier = _SKIPS.pop(str(run_dir), None)
    if earlier is None and (read_summary(run_dir) or {}).get("status") == "completed":
        earlier = run_dir  # here without the resolver (a custom hydra.sweep.subdir): still never redo it
    if earlier is not None:  # completed in an earlier launch: leave its folder alone
        if earlier != run_dir:
            shutil.rmtree(run_dir, ignore_errors=True)  # the scratch folder Hydra wrote its files into
        summary = read_summary(earlier)
        append_ledger(sweep_dir, {**entry, "dir": earlier.name, "status": "skipped", "metrics": final_metrics(summary),
                                  "wall_time": 0.0, "error": None, "note": "completed in an earlier launch"})
        print(f"job {hc.job.num} skipped ({' '.join(overrides)}): completed earlier in {earlier}", flush=True)
        return summary

    policy = cfg.get("sweep", {}).get("on_failure", "continue")
    if policy == "stop" and any(e.get("status") == "failed" and e.get("launch") == entry["launch"]
                                for e in read_ledger(sweep_dir)):  # a parallel launcher's later job
        append_ledger(sweep_dir, {**entry, "status": "not run", "error": "sweep.on_failure=stop after a failure"})
        return None

    previous = read_summary(run_dir)
    if (run_dir / "checkpoints" / "last.pt").exists() and (previous or {}).get("status") in (None, "interrupted"):
        with open_dict(cfg):
            cfg.resume = str(run_dir)  # an interrupted (or killed) attempt: continue from its checkpoint
        entry["resumed"] = True
    elif previous is not None or (run_dir / "checkpoints").exists():
        _clear(run_dir)  # a failed attempt: start again from scratch
        entry["redone"] = True

    from dlrun.config import validate
    from dlrun.runner import exit_code, train

    start, summary, error, code = time.perf_counter(), None, None, 0
    try:  # the launch checked its first job; each job's config files are checked here (e.g. experiment=a,b)
        validate(cfg, added={o.split("=", 1)[0].lstrip("+") for o in overrides if o.startswith("+")})
        summary, _ = train(cfg, run_dir, overrides=overrides, sweep_job=True)
        code = exit_code(summary)
    except DlrunError as exc:  # a non-finite loss is one
        error, code, trace = str(exc), exc.exit_code, str(exc)
    except Exception as exc:  # any other error fails this job only
        error, code, trace = f"{type(exc).__name__}: {exc}", 1, traceback.format_exc()
    finally:
        from dlrun import run_folder

        run_folder.unlock(run_dir)  # the next job of this process has its own folder
    summary = summary or read_summary(run_dir)
    status = "failed" if error else summary["status"]
    append_ledger(sweep_dir, {**entry, "status": status, "metrics": final_metrics(summary),
                              "wall_time": round(time.perf_counter() - start, 3), "error": error})
    if status == "interrupted":  # a signal stops the whole sweep; re-running the command resumes it
        raise SystemExit(code)
    if error:
        log = run_dir / f"{hc.job.name}.log"
        with open(log, "a") as f:
            f.write(trace.rstrip() + "\n")
        print_error(f"job {hc.job.num} failed ({' '.join(overrides)}): {error.splitlines()[0]}; log: {log}")
        if policy == "stop" and str(hc.launcher.get("_target_", "")).endswith("BasicLauncher"):
            raise SweepStopped(hc.job.num)  # other launchers: their later jobs see the failure in the ledger
    return summary


def workers_died(exc: BaseException, planned: list[list[str]] | None) -> bool:
    """A launcher's worker process was killed (joblib/loky's TerminatedWorkerError): every job of this launch
    that had started and has no ledger line yet is recorded as failed (killed), so the table shows it and a
    re-run redoes it (or resumes it from its last checkpoint). False for any other error."""
    from dlrun.errors import print_error

    if type(exc).__name__ != "TerminatedWorkerError":
        return False
    sweep_dir, launch = _sweep_dir(), os.environ.get(RUN_ID_ENV)
    if sweep_dir is None:
        return False
    done = {e["job"] for e in read_ledger(sweep_dir) if e.get("launch") == launch}
    folders = _job_folders(sweep_dir)
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    for num, ov in enumerate(planned or []):
        folder = folders.get(job_key(ov))
        if num in done or folder is None:
            continue  # finished, or never started: "not run" in the table
        error = f"killed: the worker process running it died ({first})"
        append_ledger(sweep_dir, {"job": num, "dir": folder.name, "overrides": list(ov), "launch": launch,
                                  "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "status": "failed",
                                  "metrics": final_metrics(read_summary(folder)), "wall_time": None, "error": error})
        print_error(f"job {num} failed ({' '.join(ov)}): {error}")
    return True


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


def _sweep_dir() -> Path | None:
    if "dir" in STATE:
        return STATE["dir"]
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        return Path(HydraConfig.get().sweep.dir)
    return None


def _table_row(entry: dict, with_folder: bool) -> dict:
    """A ledger entry as a row of the final table: its best validation value and test metric under their
    own names (best_val_loss, test_accuracy), epochs, wall time."""
    m = entry.get("metrics") or {}
    best = {k: v for k, v in m.items() if k.startswith("best_") and k != "best_epoch" and v is not None}
    test = next(({k: m[k]} for k in ("test_accuracy", "test_loss") if m.get(k) is not None), {})
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
    from dlrun.report import overrides_dict, print_runs

    sweep_dir = _sweep_dir()
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
    from dlrun.config import quote

    again = [a for a in argv if not a.startswith("hydra.sweep.dir=")] + [f"hydra.sweep.dir={quote(str(sweep_dir))}"]
    print("Re-run into the same folder to redo failed jobs, resume interrupted ones and run the rest"
          if bad else "The same command again (with new values, say) runs only what is not done yet", end="")
    print(f" (completed jobs are skipped):\n  dlrun {' '.join(shlex.quote(a) for a in again)}")
    print(f"Results: dlrun report {shlex.quote(str(sweep_dir))}")
    return 1 if bad else 0
