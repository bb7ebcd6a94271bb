"""A sweep job on SLURM that its time limit is about to end: requeue it through submitit, to resume its own folder.

conf/hydra/launcher/slurm.yaml asks SLURM for SIGUSR1 signal_delay_s before the time limit (--signal=USR1@S).
dlrun finishes the step, saves checkpoints/last.pt and marks the run interrupted (exit code 75, resumable); the
sweep job writes its ledger line, then hands the job to submitit's own time-out handler: it re-pickles the Hydra
launcher's call with one time-out fewer (hydra.launcher.max_num_timeout in all), runs `scontrol requeue` and ends
the process. The requeued job is the same call again; the sweep job finds its folder by its overrides
(dlrun/sweep/folders.py), sees the interrupted run and resumes it (dlrun/sweep/jobs.py)."""
from __future__ import annotations

import os
import signal


def in_submitit_job() -> bool:
    """This process runs a job that submitit submitted to SLURM."""
    return bool(os.environ.get("SUBMITIT_FOLDER") and os.environ.get("SLURM_JOB_ID"))


def requeue() -> str:
    """Requeue this SLURM job through submitit; does not return when it did (submitit exits the process).
    Otherwise returns why not (e.g. "timed-out too many times": hydra.launcher.max_num_timeout is spent)."""
    import subprocess

    from submitit.core.job_environment import JobEnvironment, SignalHandler
    from submitit.core.utils import UncompletedJobError

    signum = JobEnvironment._usr_sig()  # submitit's own signal (USR2), its handler installed at the job's start
    handler = getattr(signal.getsignal(signum), "__self__", None)
    if not isinstance(handler, SignalHandler):
        return "submitit's time-out handler is not installed"
    try:
        handler.checkpoint_and_try_requeue(signum)  # scontrol requeue, then sys.exit
    except UncompletedJobError as exc:
        return str(exc).removeprefix("Job not requeued because: ").rstrip(".")
    except (OSError, subprocess.SubprocessError) as exc:  # scontrol missing, refused or hanging
        return f"scontrol requeue failed: {exc}"
    return "submitit did not requeue it"


def ignore_stray_warning() -> None:
    """SIGUSR1 outside training (while the job starts, tests or writes its summary) would end the process, Python's
    default: there it is noted and ignored; during training dlrun's own handler takes it (saves and stops)."""
    import threading

    def note(signum, frame) -> None:
        os.write(2, b"SIGUSR1 (the time-limit warning) outside training: ignored\n")

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGUSR1, note)
