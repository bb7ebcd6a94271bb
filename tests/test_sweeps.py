"""Sweeps from the real CLI: failures reported as they happen, the ledger, resume by re-running, `dlrun report`."""
import csv
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import DLRUN, ROOT, read_json, read_jsonl, run_dlrun

# Two of the four jobs diverge (a non-finite loss at once); debug=smoke keeps each job to a few batches.
SWEEP = ["-m", "debug=smoke", "optimizer.lr=1e12,0.01", "seed=0,1", "logger=quiet"]
WIDE = {"COLUMNS": "200"}  # rich tables at full width in a pipe


def run_merged(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """`dlrun ARGS` with stdout and stderr in one stream, so the order of messages can be checked."""
    env = {**os.environ, "CI": "1", "PYTHONUNBUFFERED": "1", **WIDE}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run([str(DLRUN), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout, env=env, cwd=ROOT)


def snapshot(folder) -> dict:
    """Every file and folder below `folder` (itself included) with its modification time and bytes."""
    paths = [folder, *folder.rglob("*")]
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes() if p.is_file() else None) for p in paths}


def read_csv(path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_a_sweep_with_diverging_jobs_finishes_reports_and_redoes_only_the_failed_ones(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_merged(*SWEEP, f"hydra.sweep.dir={sweep}")
    out = proc.stdout
    assert proc.returncode == 1, out
    assert "Traceback" not in out, out
    # each failure is reported before the next job starts: overrides, the error in one line, the log
    for job in (0, 1):
        line = next(ln for ln in out.splitlines() if f"job {job} failed (" in ln)
        assert f"seed={job}" in line and "optimizer.lr=1000000000000.0" in line and "non-finite" in line
        assert f"log: {sweep / str(job) / 'dlrun.log'}" in line
        assert out.index(line) < out.index(f"#{job + 1} : ")
        assert "non-finite" in (sweep / str(job) / "dlrun.log").read_text()
    assert "2 job(s) of the sweep failed" in out and f"hydra.sweep.dir={sweep}" in out
    table = out[out.index(f"sweep {sweep}: 4 jobs"):out.index("Re-run into")]
    assert table.count("failed") >= 2 and table.count("completed") == 2
    assert [read_json(sweep / str(j) / "summary.json")["status"] for j in range(4)] == ["failed"] * 2 + ["completed"] * 2

    ledger = read_jsonl(sweep / "ledger.jsonl")
    assert [(e["job"], e["dir"], e["status"]) for e in ledger] == [
        (0, "0", "failed"), (1, "1", "failed"), (2, "2", "completed"), (3, "3", "completed")]
    assert ledger[2]["overrides"] == ["debug=smoke", "optimizer.lr=0.01", "seed=0", "logger=quiet"]
    assert ledger[2]["metrics"]["test_accuracy"] == read_json(sweep / "2" / "summary.json")["test_accuracy"]
    assert "non-finite" in ledger[0]["error"] and ledger[2]["error"] is None
    assert all(e["wall_time"] > 0 for e in ledger)

    # dlrun report: all four jobs in the table, the CSV and the plots; the failed ones last
    proc = run_dlrun("report", str(sweep), env=WIDE)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("failed") >= 2 and proc.stdout.count("completed") == 2
    rows = read_csv(sweep / "report.csv")
    assert [r["job"] for r in rows[2:]] == ["0", "1"] and {r["job"] for r in rows[:2]} == {"2", "3"}
    assert [r["status"] for r in rows] == ["completed", "completed", "failed", "failed"]
    assert [r["optimizer.lr"] for r in rows] == ["0.01", "0.01", "1000000000000.0", "1000000000000.0"]
    assert float(rows[0]["test_accuracy"]) >= float(rows[1]["test_accuracy"])  # sorted by the metric
    assert float(rows[0]["test_accuracy"]) == read_json(sweep / rows[0]["job"] / "summary.json")["test_accuracy"]
    assert rows[2]["test_accuracy"] == "" and "non-finite" in rows[2]["error"]
    assert {r["seed"] for r in rows} == {"0", "1"} and all(r["epochs"] for r in rows)
    for name in ("curves.png", "grid.png"):  # the grid: test accuracy against optimizer.lr, mean over seeds
        assert (sweep / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    proc = run_dlrun("report", str(sweep), "--metric", "val_loss", "--top", "1", env=WIDE)
    assert proc.returncode == 0, proc.stderr
    rows = read_csv(sweep / "report.csv")
    assert float(rows[0]["val_loss"]) <= float(rows[1]["val_loss"]) and rows[2]["val_loss"] == ""
    assert "top 1" in proc.stdout and proc.stdout.count("completed") == 1
    proc = run_dlrun("report", str(sweep), "--metric", "val_acc")
    assert proc.returncode == 2 and "Did you mean 'val_accuracy'" in proc.stderr
    code = ("import sys; from dlrun import cli; sys.argv = ['dlrun', 'report', sys.argv[1]]\n"
            "try: cli.main()\nexcept SystemExit as e: assert not e.code, e.code\n"
            "print('TORCH', 'torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code, str(sweep)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0 and "TORCH False" in proc.stdout, proc.stderr  # report never imports torch

    # the same command again: completed jobs untouched and skipped, failed ones redone in their folders
    before = {j: snapshot(sweep / j) for j in ("2", "3")}
    proc = run_merged(*SWEEP, f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 1, proc.stdout
    assert {j: snapshot(sweep / j) for j in ("2", "3")} == before
    assert "job 2 skipped" in proc.stdout and "job 0 failed (" in proc.stdout
    again = read_jsonl(sweep / "ledger.jsonl")[4:]
    assert [(e["job"], e["dir"], e["status"]) for e in again] == [
        (0, "0", "failed"), (1, "1", "failed"), (2, "2", "skipped"), (3, "3", "skipped")]
    assert again[0]["redone"] and again[2]["metrics"] == ledger[2]["metrics"]
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1", "2", "3"]


def test_on_failure_stop_ends_the_sweep_at_the_first_failure(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_merged("-m", "debug=smoke", "optimizer.lr=1e12,0.01", "logger=quiet", "sweep.on_failure=stop",
                      f"hydra.sweep.dir={sweep}")
    out = proc.stdout
    assert proc.returncode == 1, out
    assert "job 0 failed (" in out and "#1 : " not in out  # job 1 would be fine, but never starts
    assert "sweep.on_failure=stop" in out and "1 job(s) not run" in out and "not run" in out[out.index("2 jobs"):]
    assert not (sweep / "1").exists()
    assert [(e["job"], e["status"]) for e in read_jsonl(sweep / "ledger.jsonl")] == [(0, "failed")]

    proc = run_dlrun("-m", "debug=smoke", "sweep.on_failure=stpo", f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 2 and "sweep.on_failure='stpo' is not allowed" in proc.stderr
    assert "Did you mean 'stop'" in proc.stderr


def test_a_job_that_raises_fails_alone_with_its_traceback_in_its_log(tmp_path):
    sweep = tmp_path / "sweep"
    # the real CLI, with a fault injected into seed=0's training (config checks now catch what would raise)
    code = ("import sys, dlrun.train.pipeline as runner\n"
            "real = runner.train\n"
            "def train(cfg, run_dir, *a, **k):\n"
            "    if cfg.seed == 0: raise RuntimeError('injected fault')\n"
            "    return real(cfg, run_dir, *a, **k)\n"
            "runner.train = train\n"
            "from dlrun import cli; cli.main(sys.argv[1:])")
    env = {**os.environ, "CI": "1", "PYTHONUNBUFFERED": "1", **WIDE}
    proc = subprocess.run([sys.executable, "-c", code, "-m", "debug=smoke", "seed=0,1", "logger=quiet",
                           f"hydra.sweep.dir={sweep}"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, env=env, cwd=ROOT, timeout=240)
    out = proc.stdout
    assert proc.returncode == 1, out
    line = next(ln for ln in out.splitlines() if "job 0 failed (" in ln)
    assert "RuntimeError: injected fault" in line and out.index(line) < out.index("#1 : ")
    assert "Traceback" not in out and "Traceback" in (sweep / "0" / "dlrun.log").read_text()
    assert [(e["job"], e["status"]) for e in read_jsonl(sweep / "ledger.jsonl")] == [(0, "failed"), (1, "completed")]
    proc = run_dlrun("report", str(sweep), env=WIDE)  # job 0 never wrote a summary.json: the ledger tells
    assert proc.returncode == 0, proc.stderr
    assert [(r["job"], r["status"]) for r in read_csv(sweep / "report.csv")] == [("1", "completed"), ("0", "failed")]
    assert "injected fault" in read_csv(sweep / "report.csv")[1]["error"]


@pytest.mark.slow
def test_an_interrupted_sweep_resumes_its_job_from_the_checkpoint(tmp_path):
    sweep = tmp_path / "sweep"
    args = ["-m", "trainer.epochs=4", "model.hidden=[256,256]", "trainer.batch_size=16", "logger=quiet",
            "trainer.deterministic=true", "seed=0,1", f"hydra.sweep.dir={sweep}"]
    proc = subprocess.Popen([str(DLRUN), *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**os.environ, "CI": "1", **WIDE})
    metrics, deadline = sweep / "0" / "metrics.jsonl", time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if metrics.exists() and metrics.read_text().count("\n") >= 1:
            time.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
            break
        time.sleep(0.01)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 143, out
    assert read_json(sweep / "0" / "summary.json")["status"] == "interrupted" and not (sweep / "1").exists()
    assert "interrupted" in out and "not run" in out

    proc = run_merged(*args)
    assert proc.returncode == 0, proc.stdout
    entries = read_jsonl(sweep / "ledger.jsonl")
    assert [(e["job"], e["status"], e.get("resumed", False)) for e in entries] == [
        (0, "interrupted", False), (0, "completed", True), (1, "completed", False)]
    assert [r["epoch"] for r in read_jsonl(sweep / "0" / "metrics.jsonl")] == [1, 2, 3, 4]
