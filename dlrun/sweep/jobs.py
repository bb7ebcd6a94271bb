"""One job of `dlrun -m`: skip, resume, redo or run it; append its ledger line; report a failure at once."""
from __future__ import annotations

import os
import shutil
import signal
import time
import traceback
from pathlib import Path

from omegaconf import open_dict

from dlrun.sweep.folders import SKIPPED, STATE, clear
from dlrun.sweep.ledger import RUN_ID_ENV, append_ledger, final_metrics, read_ledger, read_summary
from dlrun.sweep.requeue import ignore_stray_warning, in_submitit_job, requeue

class SweepStopped(BaseException):
    """sweep.on_failure=stop after a failure; a BaseException so it passes Hydra's launcher, which
    catches every Exception of a job."""

def sweep_job(cfg, hc) -> dict | None:
    """One job of `dlrun -m`: skip, resume, redo or run it; append its ledger line; report a failure at once.

    Returns the job's summary (the earlier one for a skipped job), e.g. for a sweeper that optimises it."""
    from dlrun.errors import DlrunError, print_error

    if in_submitit_job():
        ignore_stray_warning()  # SLURM's SIGUSR1 before or after training: not the end of the process
    run_dir, sweep_dir = Path(hc.runtime.output_dir), Path(hc.runtime.cwd, hc.sweep.dir)  # cwd: chdir=true
    STATE["dir"] = Path(hc.sweep.dir)
    overrides = list(hc.overrides.task)
    entry = {"job": hc.job.num, "dir": run_dir.name, "overrides": overrides,
             "launch": os.environ.get(RUN_ID_ENV), "time": time.strftime("%Y-%m-%dT%H:%M:%S")}

    earlier = SKIPPED.pop(str(run_dir), None)
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
        clear(run_dir)  # a failed attempt: start again from scratch
        entry["redone"] = True

    from dlrun.config.validation import validate
    from dlrun.train.pipeline import exit_code, train

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
        from dlrun.train import run_folder

        run_folder.unlock(run_dir)  # the next job of this process has its own folder
    summary = summary or read_summary(run_dir)
    status = "failed" if error else summary["status"]
    append_ledger(sweep_dir, {**entry, "status": status, "metrics": final_metrics(summary),
                              "wall_time": round(time.perf_counter() - start, 3), "error": error})
    if status == "interrupted" and summary.get("signal") == signal.SIGUSR1 and in_submitit_job():
        why = requeue()  # SLURM's time-limit warning: requeued (no return), to resume this folder
        print_error(f"job {hc.job.num} stopped before its time limit and was not requeued ({why}); "
                    f"re-run the sweep command to resume it")
        return summary  # this array task ends; the ledger says interrupted
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
