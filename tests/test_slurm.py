"""SLURM for real: a one-node cluster on this machine (tests/slurm/cluster.sh), sweeps through Hydra's submitit
launcher (`dlrun -m hydra/launcher=slurm`), and a job that reaches its time limit, saves, is requeued and resumes.

The cluster needs root and Debian's slurm-wlm and munge (.ci/run installs them); without them every test here
skips and says why. One cluster serves the module; the fixture stops it and checks that nothing it started is left."""
from __future__ import annotations

import csv
import importlib.util
import os
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import DLRUN, ROOT, read_json, read_jsonl

CLUSTER = ROOT / "tests" / "slurm" / "cluster.sh"
# a whole-module limit where pytest-timeout is installed; every subprocess below has its own timeout anyway
pytestmark = [pytest.mark.timeout(900)] if importlib.util.find_spec("pytest_timeout") else []

# The shipped launcher config asks for a GPU node, 4 CPUs and 16 GB: here each job gets one CPU, no GPU, 2 GB.
LAUNCHER = ["hydra/launcher=slurm", "hydra.launcher.gpus_per_node=null", "hydra.launcher.cpus_per_task=1",
            "hydra.launcher.mem_gb=2"]


class Cluster:
    """A running test cluster: its folder, and the environment that points SLURM's commands (and submitit) at it."""

    def __init__(self, folder: Path):
        self.folder = folder
        # nothing of a SLURM job this test may itself run in: sbatch would take it for its own
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("SLURM_", "SBATCH_", "SRUN_", "SALLOC_", "SUBMITIT_"))}
        env.update(SLURM_CONF=str(folder / "slurm.conf"), PATH=f"{folder / 'bin'}:{env['PATH']}:/usr/sbin:/sbin",
                   CI="1", PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", COLUMNS="200")
        env.pop("HYDRA_FULL_ERROR", None)
        self.env = env

    def run(self, *args: str, timeout: float = 30) -> str:
        """A SLURM command (squeue, scontrol, ...) against this cluster: its output."""
        return subprocess.run(args, capture_output=True, text=True, env=self.env, timeout=timeout, check=True).stdout

    def dlrun(self, *args: str, timeout: float = 300, **popen) -> subprocess.CompletedProcess | subprocess.Popen:
        """`dlrun ARGS` with this cluster as SLURM; Popen(...) when `popen` is given (stdout and stderr merged)."""
        if popen:
            return subprocess.Popen([str(DLRUN), *args], cwd=ROOT, env=self.env, text=True, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT)
        return subprocess.run([str(DLRUN), *args], cwd=ROOT, env=self.env, text=True, capture_output=True,
                              timeout=timeout)

    def logs(self, lines: int = 30) -> str:
        """The end of the daemons' logs, for an assertion's message."""
        return "".join(f"\n--- {log.name}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
                       for log in sorted((self.folder / "log").glob("*.log")))


def _alive(pid: int) -> bool:
    """A process with this id runs (a zombie waiting for its parent to reap it does not count)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _steps_of(folder: Path) -> list[int]:
    """slurmstepd processes of the cluster in `folder` (they hold files in its spool folder)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and (proc / "comm").read_text().strip() == "slurmstepd" and any(
                    os.readlink(fd).startswith(str(folder)) for fd in (proc / "fd").iterdir()):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


@pytest.fixture(scope="module")
def slurm():
    """A one-node SLURM cluster for this module's tests; skips with the reason (and the daemons' last log lines)
    where it cannot start. Stopped at the end, and then none of the processes it started may be left."""
    folder = Path(tempfile.mkdtemp(prefix="dlrun-slurm-"))

    def stop() -> None:
        daemons = {f.stem: int(f.read_text()) for f in (folder / "run").glob("*.pid") if f.read_text().strip()}
        steps = _steps_of(folder)
        subprocess.run(["bash", str(CLUSTER), "stop", str(folder)], capture_output=True, timeout=120)
        left = {name: pid for name, pid in {**daemons, **{f"slurmstepd {p}": p for p in steps}}.items() if _alive(pid)}
        assert not left, f"still running after `cluster.sh stop`: {left}"
        assert not folder.exists()

    try:
        start = subprocess.run(["bash", str(CLUSTER), "start", str(folder)], capture_output=True, text=True,
                               timeout=120)
    except subprocess.TimeoutExpired as exc:
        start = subprocess.CompletedProcess(exc.cmd, 1, "", f"cluster.sh start took over 120 s\n{exc.stderr or ''}")
    if start.returncode != 0:
        reason = (start.stderr or start.stdout).strip()
        stop()
        pytest.skip(f"no SLURM test cluster on this machine: {reason[-3000:]}")
    yield Cluster(folder)
    stop()


def _array_id(sweep: Path) -> str:
    """The SLURM job id of the sweep's job array (submitit's folders are SWEEP/.submitit/ID_TASK)."""
    ids = {p.name.split("_")[0] for p in (sweep / ".submitit").glob("*_0")}
    assert len(ids) == 1, sorted(p.name for p in (sweep / ".submitit").iterdir())
    return ids.pop()


def test_a_sweep_runs_as_a_slurm_job_array_and_is_reported(slurm, tmp_path):
    sweep = tmp_path / "sweep"
    proc = slurm.dlrun("-m", *LAUNCHER, "hydra.launcher.timeout_min=5", "debug=smoke", "logger=quiet", "seed=0,1",
                       f"hydra.sweep.dir={sweep}")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out + slurm.logs()
    assert "Submitit 'slurm' sweep output dir" in out and "Traceback" not in out
    assert f"sweep {sweep}: 2 jobs" in out and out.count("completed") >= 1

    # both jobs ran on the cluster, as the two tasks of one job array, and SLURM says they completed
    array = _array_id(sweep)
    states = dict(line.split() for line in slurm.run("squeue", "-h", "--states=all", "-r", "-j", array,
                                                      "-o", "%i %T").splitlines())
    assert states == {f"{array}_0": "COMPLETED", f"{array}_1": "COMPLETED"}, states
    script = (sweep / ".submitit" / array / f"{array}_submission.sh").read_text()
    assert "#SBATCH --signal=USR1@120" in script and "#SBATCH --cpus-per-task=1" in script
    assert "--gpus-per-node" not in script  # gpus_per_node=null: a CPU job

    # every job's run folder is complete
    for job in (0, 1):
        run = sweep / str(job)
        summary = read_json(run / "summary.json")
        assert summary["status"] == "completed" and summary["epochs_completed"] == 1, summary
        assert isinstance(summary["test_accuracy"], float)
        assert (run / "checkpoints" / "best.pt").stat().st_size and (run / "checkpoints" / "last.pt").stat().st_size
        assert [r["epoch"] for r in read_jsonl(run / "metrics.jsonl")] == [1]
        assert f"seed={job}" in (run / ".hydra" / "overrides.yaml").read_text().replace("- ", "")
        assert f"job_id={array}_{job}" in (sweep / ".submitit" / f"{array}_{job}" / f"{array}_{job}_0_log.out").read_text()

    # the ledger records both, from this one launch
    ledger = sorted(read_jsonl(sweep / "ledger.jsonl"), key=lambda e: e["job"])
    assert [(e["job"], e["dir"], e["status"]) for e in ledger] == [(0, "0", "completed"), (1, "1", "completed")]
    assert len({e["launch"] for e in ledger}) == 1
    assert ledger[1]["metrics"]["test_accuracy"] == read_json(sweep / "1" / "summary.json")["test_accuracy"]

    # dlrun report sees them
    report = subprocess.run([str(DLRUN), "report", str(sweep)], cwd=ROOT, env=slurm.env, text=True,
                            capture_output=True, timeout=120)
    assert report.returncode == 0, report.stdout + report.stderr
    assert report.stdout.count("completed") >= 1, report.stdout
    with open(sweep / "report.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted((r["job"], r["status"], r["seed"]) for r in rows) == [("0", "completed", "0"), ("1", "completed", "1")]


def test_the_requeue_goes_through_submitits_handler_and_its_count(tmp_path, monkeypatch):
    """dlrun/sweep/requeue.py with submitit's real time-out handler (no cluster: `scontrol requeue` recorded): the
    job is re-pickled with one time-out fewer and ends; once max_num_timeout is spent it is not requeued, and why."""
    import signal

    from submitit.core.job_environment import SignalHandler
    from submitit.core.utils import DelayedSubmission, JobPaths
    from submitit.slurm.slurm import SlurmJobEnvironment

    from dlrun.sweep import requeue

    class Call:  # stands in for Hydra's launcher: callable, and checkpoint() resubmits the same call
        def __call__(self):
            return None

        def checkpoint(self):
            return DelayedSubmission(self)

    for name, value in {"SLURM_JOB_ID": "7", "SLURM_PROCID": "0", "SUBMITIT_FOLDER": str(tmp_path)}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID", raising=False)
    assert requeue.in_submitit_job()
    assert requeue.requeue() == "submitit's time-out handler is not installed"
    requeued = []
    monkeypatch.setattr(SlurmJobEnvironment, "_requeue", lambda self, countdown: requeued.append((self.job_id, countdown)))
    paths = JobPaths(tmp_path, job_id="7", task_id=0)
    old = signal.getsignal(signal.SIGUSR2)
    try:
        for timeouts_left in (2, 0):
            delayed = DelayedSubmission(Call())
            delayed.set_timeout(1, timeouts_left)
            signal.signal(signal.SIGUSR2, SignalHandler(SlurmJobEnvironment(), paths, delayed).checkpoint_and_try_requeue)
            if timeouts_left:
                with pytest.raises(SystemExit):  # submitit ends the process once the job is requeued
                    requeue.requeue()
                assert requeued == [("7", 1)]
                assert DelayedSubmission.load(paths.submitted_pickle)._timeout_countdown == 1
            else:
                assert requeue.requeue() == "timed-out too many times" and requeued == [("7", 1)]
    finally:
        signal.signal(signal.SIGUSR2, old)


# Long enough that the first attempt always meets its time limit (SLURM's shortest, 1 minute), even on an idle
# machine; deterministic on the CPU, so the resumed run can be compared with an uninterrupted one.
LONG = ["trainer.epochs=240", "trainer.deterministic=true", "model.hidden=[256,256]", "trainer.batch_size=16",
        "logger=quiet", "trainer.summary=false", "seed=0"]


@pytest.mark.slow  # 2 to 4 minutes: SLURM's shortest time limit is a minute, and it checks limits every 30 s
def test_a_job_at_its_time_limit_saves_is_requeued_and_resumes_to_the_uninterrupted_result(slurm, tmp_path):
    """SLURM sends SIGUSR1 signal_delay_s before the time limit (it checks every 30 s, so 5 s before the minute ends
    means 5 to 35 s before it); dlrun saves and exits 75; submitit requeues the job, which resumes its own folder,
    as often as needed (max_num_timeout); the result is the uninterrupted run's, to the bit."""
    import torch

    sweep, reference = tmp_path / "sweep", tmp_path / "reference"
    started = time.monotonic()
    proc = slurm.dlrun("-m", *LAUNCHER, "hydra.launcher.timeout_min=1", "hydra.launcher.signal_delay_s=5",
                       "hydra.launcher.max_num_timeout=8", *LONG, f"hydra.sweep.dir={sweep}", popen=True)
    try:  # meanwhile, the same run uninterrupted, here
        ref = subprocess.run([str(DLRUN), *LONG, f"hydra.run.dir={reference}"], cwd=ROOT, env=slurm.env, text=True,
                             capture_output=True, timeout=400)
        assert ref.returncode == 0, ref.stdout + ref.stderr
        out = proc.communicate(timeout=max(60.0, 720 - (time.monotonic() - started)))[0]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    submitit_log = "".join(p.read_text() for p in sorted((sweep / ".submitit").rglob("*_log.*")))
    assert proc.returncode == 0, out + submitit_log + slurm.logs()

    # interrupted by the time-limit signal at least once, each time saved and requeued, then completed
    attempts = [e for e in read_jsonl(sweep / "ledger.jsonl") if e["job"] == 0]
    statuses = [e["status"] for e in attempts]
    assert len(attempts) >= 2 and statuses[-1] == "completed" and set(statuses[:-1]) == {"interrupted"}, statuses
    assert [bool(e.get("resumed")) for e in attempts] == [False] + [True] * (len(attempts) - 1)
    assert {e["dir"] for e in attempts} == {"0"} and not (sweep / "1").exists()  # its own folder each time
    assert submitit_log.count("SIGUSR1 received: state saved") == len(attempts) - 1, submitit_log
    assert submitit_log.count("Requeued job") == len(attempts) - 1, submitit_log
    job_id = next(p.name for p in (sweep / ".submitit").iterdir() if p.name.isdigit())
    restarts = slurm.run("scontrol", "show", "job", job_id).split("Restarts=")[1].split()[0]
    assert int(restarts) == len(attempts) - 1
    log = (sweep / "0" / "dlrun.log").read_text()
    assert log.count(": new run in") == 1 and log.count(": resuming the run after epoch") == len(attempts) - 1

    # the same result as the uninterrupted run: every epoch once, the same losses, test metrics and weights
    a, b = read_json(reference / "summary.json"), read_json(sweep / "0" / "summary.json")
    assert b["status"] == "completed" and b["epochs_completed"] == a["epochs_completed"] == 240
    assert (b["test_loss"], b["test_accuracy"]) == pytest.approx((a["test_loss"], a["test_accuracy"]), abs=1e-6)
    rows_a, rows_b = read_jsonl(reference / "metrics.jsonl"), read_jsonl(sweep / "0" / "metrics.jsonl")
    assert [r["epoch"] for r in rows_b] == list(range(1, 241))
    assert [r["train_loss"] for r in rows_b] == pytest.approx([r["train_loss"] for r in rows_a], abs=1e-6)
    wa = torch.load(reference / "checkpoints" / "last.pt", weights_only=True)["model"]
    wb = torch.load(sweep / "0" / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert wa.keys() == wb.keys() and all(torch.allclose(wa[k], wb[k], rtol=0, atol=1e-6) for k in wa)


def test_the_multi_node_ddp_job_script_runs_on_one_node(slurm, tmp_path):
    """experiments/distributed/slurm_ddp.sbatch, as the README gives it, on this one node: srun starts torchrun,
    torchrun two dlrun processes (gloo), which meet at the rendezvous and train one model."""
    import sys

    run, log = tmp_path / "run", tmp_path / "job.out"
    job = slurm.run("sbatch", "--parsable", "--nodes=1", "--cpus-per-task=2", "--time=5", f"--output={log}",
                    f"--chdir={ROOT}", f"--export=ALL,NPROC_PER_NODE=2,RUN_DIR={run},MASTER_PORT={_free_port()},"
                    f"PATH={Path(sys.executable).parent}:{slurm.env['PATH']}",
                    str(ROOT / "experiments" / "distributed" / "slurm_ddp.sbatch"),
                    "trainer.epochs=2", "trainer.batch_size=17", "logger=quiet").strip()
    deadline = time.time() + 240
    while time.time() < deadline and slurm.run("squeue", "-h", "-j", job, "-o", "%T").strip():
        time.sleep(1)
    states = slurm.run("squeue", "-h", "--states=all", "-j", job, "-o", "%T").split()
    output = log.read_text() if log.exists() else ""
    assert states == ["COMPLETED"], (states, output[-3000:], slurm.logs())
    summary = read_json(run / "summary.json")
    assert summary["status"] == "completed" and summary["processes"] == 2 and summary["strategy"] == "ddp"
    assert [r["step"] for r in read_jsonl(run / "metrics.jsonl")] == [37, 74]  # 629 samples per rank / 17
    assert "attempt 1 of job" in output and "Traceback" not in output


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
