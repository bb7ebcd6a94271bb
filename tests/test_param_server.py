"""`trainer.strategy=param_server`: asynchronous SGD with a parameter server on torch.distributed.rpc (rank 0 serves,
the other ranks push gradients and pull weights). Real CLI runs, gloo and TensorPipe on this CPU. Digits has 1258
training samples: one worker at batch 32 takes ceil(1258 / 32) = 40 steps per epoch, two take ceil(629 / 32) = 20."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import DLRUN, assert_clean_error, read_json, read_jsonl, run_dlrun

TORCHRUN = Path(sys.executable).with_name("torchrun")
PS = ["trainer.strategy=param_server", "optimizer=sgd", "optimizer.lr=0.1", "trainer.batch_size=32",
      "trainer.summary=false"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    run = tmp_path_factory.mktemp("ps") / "run"
    proc = run_dlrun(*PS, "trainer.devices=2", "trainer.epochs=5", "logger=quiet", "logger.console=true",
                     f"hydra.run.dir={run}")
    return run, proc


def test_a_server_and_one_worker_learn_digits_and_rank_0_alone_writes(trained):
    run, proc = trained
    assert proc.returncode == 0, proc.stderr[-3000:]
    s = read_json(run / "summary.json")
    assert s["status"] == "completed" and s["strategy"] == "param_server" and s["processes"] == 2
    assert s["test_accuracy"] > 0.9, s["test_accuracy"]
    rows = read_jsonl(run / "metrics.jsonl")
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4, 5]  # one row per epoch: rank 0's
    assert [r["step"] for r in rows] == [40, 80, 120, 160, 200]  # the server's updates: every step of the worker
    assert all(r["staleness"] == 0 for r in rows)  # one worker: its pushes never meet another's
    assert all(r["train_loss"] > 0 and 0 < r["val_accuracy"] <= 1 for r in rows)
    assert proc.stdout.count("test_accuracy") == 1, proc.stdout  # one summary table: rank 0's
    assert len((run / "metrics.csv").read_text().splitlines()) == 6
    assert "Traceback" not in proc.stderr


def test_its_checkpoint_resumes_in_one_process_under_another_strategy(trained, tmp_path):
    run, proc = trained
    assert proc.returncode == 0, proc.stderr[-3000:]
    copy = tmp_path / "run"
    subprocess.run(["cp", "-r", str(run), str(copy)], check=True)
    proc = run_dlrun(f"resume={copy}", "trainer.devices=1", "trainer.strategy=ddp", "trainer.epochs=6")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = read_jsonl(copy / "metrics.jsonl")
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4, 5, 6] and rows[5]["step"] == 200 + 40
    s = read_json(copy / "summary.json")
    assert s["status"] == "completed" and "processes" not in s and s["test_accuracy"] > 0.9


def test_one_process_is_refused_in_one_line_and_leaves_no_folder(tmp_path):
    proc = run_dlrun("trainer.strategy=param_server", "debug=smoke", f"hydra.run.dir={tmp_path / 'run'}")
    assert_clean_error(proc, 2, "trainer.strategy=param_server needs a server and at least one worker: "
                                "trainer.devices >= 2")
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (tmp_path / "run").exists()


def test_mid_epoch_checkpoints_are_refused_in_one_line(tmp_path):
    proc = run_dlrun(*PS, "trainer.devices=2", "trainer.checkpoint_every_steps=5", "debug=smoke",
                     f"hydra.run.dir={tmp_path / 'run'}")
    assert_clean_error(proc, 2, "trainer.checkpoint_every_steps is not available with trainer.strategy=param_server")
    assert not (tmp_path / "run" / "summary.json").exists()


def test_two_workers_under_torchrun_push_asynchronously(tmp_path):
    """Three processes (more than this machine's cores: torchrun does not ask) - a server and two workers whose
    pushes interleave, so some gradients are stale; the epoch still has every sample once."""
    env = {**os.environ, "CI": "1", "OMP_NUM_THREADS": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    proc = subprocess.run([str(TORCHRUN), "--standalone", "--nproc_per_node=3", str(DLRUN), *PS, "trainer.epochs=2",
                           "logger=quiet", "trainer.slow_rank_delay_ms=2", f"hydra.run.dir={tmp_path / 'run'}"],
                          capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in rows] == [40, 80]  # 20 pushes from each of two workers per epoch
    assert sum(r["staleness"] for r in rows) > 0, rows
    s = read_json(tmp_path / "run" / "summary.json")
    assert s["status"] == "completed" and s["processes"] == 3 and s["test_accuracy"] > 0.8
