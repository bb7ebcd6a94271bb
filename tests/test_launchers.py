"""Launchers: a parallel local sweep with joblib (real CLI), and the shipped SLURM config (no cluster here)."""
from __future__ import annotations

import json
import os
import stat

import pytest
import yaml

from conftest import read_json, run_dlrun

SLURM = ["hydra/launcher=slurm", "hydra.launcher.partition=gpu", "hydra.launcher.timeout_min=30"]


def test_joblib_sweep_runs_jobs_in_parallel_processes(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_dlrun("-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "debug=smoke", "logger=quiet",
                     "optimizer.lr=1e12,0.01", f"hydra.sweep.dir={sweep}")
    out = proc.stdout + proc.stderr
    assert "Joblib.Parallel(n_jobs=2" in out
    assert read_json(sweep / "1" / "summary.json")["status"] == "completed"
    assert read_json(sweep / "0" / "summary.json")["status"] == "failed"  # lr=1e12 diverges
    # the jobs ran in worker processes, yet the launching process reports the failure and exits non-zero
    assert proc.returncode == 1, out
    assert "1 job(s) of the sweep failed: job 0" in out


def test_on_failure_stop_reaches_jobs_in_other_processes(tmp_path):
    """The stop is read from the ledger by each worker process: jobs after the failure never train."""
    sweep = tmp_path / "sweep"
    proc = run_dlrun("-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=1", "sweep.on_failure=stop", "debug=smoke",
                     "logger=quiet", "optimizer.lr=1e12,0.01,0.001", f"hydra.sweep.dir={sweep}")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "Traceback" not in out, out
    ledger = [json.loads(line) for line in (sweep / "ledger.jsonl").read_text().splitlines()]
    assert {row["job"]: row["status"] for row in ledger} == {0: "failed", 1: "not run", 2: "not run"}
    assert not (sweep / "1" / "summary.json").exists() and not (sweep / "2" / "checkpoints").exists()


def test_slurm_config_composes():
    proc = run_dlrun("--cfg", "hydra", "--resolve", *SLURM)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    launcher = yaml.safe_load(proc.stdout)["hydra"]["launcher"]
    assert launcher["_target_"].endswith("submitit_launcher.SlurmLauncher")
    assert {k: launcher[k] for k in ("timeout_min", "cpus_per_task", "gpus_per_node", "mem_gb", "partition")} == \
        {"timeout_min": 30, "cpus_per_task": 4, "gpus_per_node": 1, "mem_gb": 16, "partition": "gpu"}
    assert launcher["additional_parameters"] == {"signal": "USR1@120"}  # dlrun saves, exits 75 and is requeued


def test_slurm_launcher_writes_the_sbatch_script(tmp_path, monkeypatch):
    """The submitit launcher's own code turns the config into an sbatch script; only the submission is stubbed."""
    import submitit
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from dlrun.config import CONF_DIR

    with initialize_config_dir(CONF_DIR, version_base="1.3", job_name="dlrun"):
        cfg = compose("config", overrides=[*SLURM, f"hydra.sweep.dir={tmp_path}"], return_hydra_config=True)
    launcher = instantiate(cfg.hydra.launcher)
    launcher.setup(hydra_context=None, task_function=print, config=cfg)

    class Submitted(Exception):
        pass

    def submit(self, command):
        raise Submitted(self._make_submission_file_text(command, "uid"))

    monkeypatch.setattr(submitit.SlurmExecutor, "affinity", classmethod(lambda cls: 1))  # no srun here
    monkeypatch.setattr(submitit.SlurmExecutor, "_submit_command", submit)
    with pytest.raises(Submitted) as info:
        launcher.launch([["seed=0"], ["seed=1"]], initial_job_idx=0)
    sbatch = str(info.value).splitlines()
    for line in ("#SBATCH --time=30", "#SBATCH --cpus-per-task=4", "#SBATCH --gpus-per-node=1",
                 "#SBATCH --partition=gpu", "#SBATCH --mem=16GB", "#SBATCH --signal=USR1@120",
                 "#SBATCH --job-name=dlrun", "#SBATCH --array=0-1%2"):
        assert line in sbatch, "\n".join(sbatch)
    assert any(line.startswith("srun ") and "submitit.core._submit" in line for line in sbatch)


FAKE_SBATCH = """#!/bin/bash
# Runs each array task of the script in the background, like a one-node cluster, and prints a job id.
cp "$1" "$FAKE_SLURM_DIR/sbatch.sh"
range=$(sed -n 's/^#SBATCH --array=\\([0-9]*\\)-\\([0-9]*\\).*/\\1 \\2/p' "$1")
(sleep 1; for i in $(seq ${range:-0 0}); do
  SLURM_JOB_ID=42$i SLURM_ARRAY_JOB_ID=42 SLURM_ARRAY_TASK_ID=$i SLURM_NTASKS=1 SLURM_PROCID=0 SLURM_LOCALID=0 \\
    SLURM_NODEID=0 SLURM_JOB_NUM_NODES=1 bash "$1"
done) > "$FAKE_SLURM_DIR/jobs.log" 2>&1 < /dev/null &
echo "Submitted batch job 42"
"""
FAKE_SRUN = """#!/bin/bash
while [[ "$1" == --* ]]; do case "$1" in --unbuffered) shift;; *) shift 2;; esac; done
exec "$@"
"""


@pytest.mark.slow
def test_slurm_sweep_on_a_fake_cluster(tmp_path):
    """`dlrun -m hydra/launcher=slurm` end to end, with sbatch/srun/sacct stand-ins that run the jobs here."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("sbatch", FAKE_SBATCH), ("srun", FAKE_SRUN), ("sacct", "#!/bin/bash\n")):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(stat.S_IRWXU)
    sweep = tmp_path / "sweep"
    proc = run_dlrun("-m", *SLURM, "hydra.launcher.gpus_per_node=null", "debug=smoke", "logger=quiet", "seed=0,1",
                     f"hydra.sweep.dir={sweep}", timeout=300,
                     env={"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "FAKE_SLURM_DIR": str(tmp_path)})
    assert proc.returncode == 0, proc.stdout + proc.stderr + (tmp_path / "jobs.log").read_text()
    assert "#SBATCH --signal=USR1@120" in (tmp_path / "sbatch.sh").read_text()
    for job in ("0", "1"):
        assert read_json(sweep / job / "summary.json")["status"] == "completed"


def _lock_holder(lock) -> int | None:
    """The pid holding a run folder's lock (the kernel's table), or None."""
    import pathlib

    inode = os.stat(lock).st_ino
    for line in pathlib.Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if "FLOCK" in fields and fields[-3].rsplit(":", 1)[-1] == str(inode):
            return int(fields[-4])
    return None


def test_a_killed_joblib_worker_is_a_failed_job_that_a_rerun_redoes(tmp_path):
    """Issue 13, case 18: kill -9 of the worker running a job: no TerminatedWorkerError traceback; the job is
    failed (killed) in the table and the ledger, the launch exits non-zero, and the same command redoes it."""
    import signal
    import subprocess
    import time

    from conftest import DLRUN, ROOT

    sweep = tmp_path / "sweep"
    args = ["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "logger=quiet", "dataset=synthetic",
            "trainer.epochs=120", "trainer.summary=false", "seed=0,1", f"hydra.sweep.dir={sweep}"]
    env = {**os.environ, "CI": "1", "COLUMNS": "200"}
    env.pop("HYDRA_FULL_ERROR", None)
    proc = subprocess.Popen([str(DLRUN), *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    log, deadline, victim = sweep / "1" / "dlrun.log", time.time() + 120, None
    while time.time() < deadline and victim is None:
        if log.exists() and "training: epochs" in log.read_text():
            victim = _lock_holder(sweep / "1" / ".dlrun.lock")
        time.sleep(0.05)
    assert victim is not None, "job 1 never started training"
    os.kill(victim, signal.SIGKILL)
    out = proc.communicate(timeout=240)[0]
    assert proc.returncode == 1, out
    assert "Traceback" not in out and "TerminatedWorkerError:" not in out, out
    ledger = [json.loads(line) for line in (sweep / "ledger.jsonl").read_text().splitlines()]
    killed = [e for e in ledger if e["job"] == 1]
    assert killed and killed[-1]["status"] == "failed" and killed[-1]["error"].startswith("killed"), ledger
    assert "job 1 failed (logger=quiet dataset=synthetic trainer.epochs=120 trainer.summary=False seed=1): killed: the " \
           "worker process running it died" in out
    assert "failed" in out[out.index(f"sweep {sweep}"):] and "job(s) of the sweep failed" in out

    again = run_dlrun(*args[:-1], f"hydra.sweep.dir={sweep}", env={"COLUMNS": "200"}, timeout=400)
    assert again.returncode == 0, again.stdout + again.stderr
    assert read_json(sweep / "1" / "summary.json")["status"] == "completed"
    assert read_json(sweep / "1" / "summary.json")["epochs_completed"] == 120
