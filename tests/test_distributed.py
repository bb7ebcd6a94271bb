"""One training in several processes (torch.distributed, gloo on this CPU): `dlrun trainer.devices=N` and
`torchrun ... dlrun`. Digits has 1258 training samples = 2 x 17 x 37, so 2 processes at batch 17 and one at
batch 34 take the same 37 steps over the same samples: the same run, up to the order of float additions."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import DLRUN, ROOT, assert_clean_error, read_json, read_jsonl, run_dlrun

TORCHRUN = Path(sys.executable).with_name("torchrun")
SMALL = ["trainer.epochs=2", "trainer.deterministic=true", "optimizer=sgd", "optimizer.lr=0.1", "logger=quiet",
         "trainer.summary=false"]


def weights(run: Path, name: str = "last.pt") -> dict:
    return torch.load(run / "checkpoints" / name, map_location="cpu", weights_only=False)["model"]


def assert_same_weights(a: dict, b: dict, atol: float = 1e-5) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=atol), (k, (a[k] - b[k]).abs().max())


def test_two_processes_at_batch_b_follow_one_process_at_batch_2b_and_only_rank_0_writes(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    assert run_dlrun(*SMALL, "trainer.batch_size=34", f"hydra.run.dir={one}").returncode == 0
    proc = run_dlrun(*SMALL, "trainer.batch_size=17", "trainer.devices=2", "logger.console=true",
                     f"hydra.run.dir={two}")
    assert proc.returncode == 0, proc.stderr
    a, b = read_jsonl(one / "metrics.jsonl"), read_jsonl(two / "metrics.jsonl")
    assert [r["step"] for r in b] == [37, 74]  # 629 samples per rank / 17 = 37 steps, as 1258 / 34
    for ra, rb in zip(a, b):
        for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
            assert rb[key] == pytest.approx(ra[key], rel=1e-5, abs=1e-6), key
    assert_same_weights(weights(one), weights(two))
    s = read_json(two / "summary.json")
    assert s["status"] == "completed" and s["processes"] == 2 and s["strategy"] == "ddp"
    assert s["test_accuracy"] == pytest.approx(read_json(one / "summary.json")["test_accuracy"], abs=1e-9)
    # rank 0 alone wrote and printed: one summary table, one epoch line per epoch, nothing else in the folder
    assert proc.stdout.count("test_accuracy") == 1, proc.stdout
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())
    assert len(b) == 2 and len((two / "metrics.csv").read_text().splitlines()) == 3


def test_the_dataloader_path_shards_the_same_samples(tmp_path):
    """dataset.in_memory=false: a DataLoader serves each rank's shard; same run as the in-memory one."""
    mem, loader = tmp_path / "mem", tmp_path / "loader"
    common = [*SMALL, "trainer.epochs=1", "trainer.batch_size=17", "trainer.devices=2"]
    assert run_dlrun(*common, f"hydra.run.dir={mem}").returncode == 0
    proc = run_dlrun(*common, "dataset.in_memory=false", f"hydra.run.dir={loader}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    a, b = read_jsonl(mem / "metrics.jsonl")[0], read_jsonl(loader / "metrics.jsonl")[0]
    assert b["step"] == 37 and b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-6)
    assert b["val_loss"] == pytest.approx(a["val_loss"], rel=1e-6)
    assert_same_weights(weights(mem), weights(loader))


def test_local_sgd_averaging_every_step_with_plain_sgd_equals_ddp(tmp_path):
    common = [*SMALL, "trainer.epochs=1", "trainer.batch_size=17", "trainer.devices=2"]
    ddp, avg = tmp_path / "ddp", tmp_path / "avg"
    assert run_dlrun(*common, f"hydra.run.dir={ddp}").returncode == 0
    assert run_dlrun(*common, "trainer.strategy=local_sgd", "trainer.average_every=1",
                     f"hydra.run.dir={avg}").returncode == 0
    # averaging the weights after one plain SGD step is averaging the gradients
    assert_same_weights(weights(ddp), weights(avg))
    assert read_json(avg / "summary.json")["strategy"] == "local_sgd"
    rows = read_jsonl(avg / "metrics.jsonl")
    assert rows[0]["exchanged_mb"] == pytest.approx(38 * PARAMS * 4 / 1e6)  # 37 averages + the epoch's end


PARAMS = 50826  # the default MLP's parameters on digits


@pytest.mark.slow
def test_local_sgd_averaging_every_4_steps_takes_another_path_and_still_learns(tmp_path):
    common = [*SMALL, "trainer.epochs=1", "trainer.batch_size=17", "trainer.devices=2"]
    ddp, avg4 = tmp_path / "ddp", tmp_path / "avg4"
    assert run_dlrun(*common, f"hydra.run.dir={ddp}").returncode == 0
    assert run_dlrun(*common, "trainer.strategy=local_sgd", "trainer.average_every=4",
                     f"hydra.run.dir={avg4}").returncode == 0
    w4, wd = weights(avg4), weights(ddp)
    assert any(not torch.allclose(w4[k], wd[k], atol=1e-5) for k in wd)  # rarer averaging: another path
    assert read_json(avg4 / "summary.json")["test_accuracy"] > 0.7
    assert read_jsonl(avg4 / "metrics.jsonl")[0]["exchanged_mb"] == pytest.approx(11 * PARAMS * 4 / 1e6)  # 10 + 1


def test_torchrun_starts_the_ranks_one_folder_and_a_checkpoint_resumes_in_one_process(tmp_path):
    env = {**os.environ, "CI": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([str(TORCHRUN), "--standalone", "--nproc_per_node=2", str(DLRUN), *SMALL,
                           "trainer.batch_size=17", f"hydra.run.dir={tmp_path / 'run'}"], capture_output=True,
                          text=True, timeout=240, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # no second folder from rank 1
    two = read_json(tmp_path / "run" / "summary.json")
    assert two["processes"] == 2 and two["epochs_completed"] == 2
    # without hydra.run.dir each rank picks a timestamped folder: rank 0's is used by all
    proc = subprocess.run([str(TORCHRUN), "--standalone", "--nproc_per_node=2", str(DLRUN), *SMALL,
                           "trainer.epochs=1", "trainer.batch_size=17"], capture_output=True, text=True,
                          timeout=240, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(list((tmp_path / "outputs").glob("*/*"))) == 1
    # the 2-process checkpoint goes on in one process (same weights file, another process count)
    proc = run_dlrun(f"resume={tmp_path / 'run'}", "trainer.epochs=3")
    assert proc.returncode == 0, proc.stderr
    rows = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert [r["epoch"] for r in rows] == [1, 2, 3] and rows[2]["step"] == 74 + 74  # 37 steps per epoch in two processes, then 74 alone
    assert "processes" not in read_json(tmp_path / "run" / "summary.json")


def test_a_one_process_checkpoint_resumes_in_two_and_a_sigterm_resumes_bit_identically(tmp_path):
    full, cut = tmp_path / "full", tmp_path / "cut"
    args = [*SMALL, "trainer.epochs=3", "trainer.batch_size=17", "trainer.checkpoint_every_steps=5"]
    assert run_dlrun(*args, "trainer.epochs=1", f"hydra.run.dir={cut}").returncode == 0
    assert run_dlrun(f"resume={cut}", "trainer.devices=2", "trainer.epochs=2").returncode == 0
    rows = read_jsonl(cut / "metrics.jsonl")
    assert [r["step"] for r in rows] == [74, 74 + 37]  # 74 steps alone, then 37 in each of two processes
    # SIGTERM to the launching process: the launcher passes it to the ranks, rank 0 saves once, exit 143
    assert run_dlrun(*args, "trainer.devices=2", f"hydra.run.dir={full}").returncode == 0
    stopped = tmp_path / "stopped"
    proc = subprocess.Popen([str(DLRUN), *args, "trainer.devices=2", "trainer.slow_rank_delay_ms=30",
                             f"hydra.run.dir={stopped}"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "CI": "1", "OMP_NUM_THREADS": "1"}, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (stopped / "metrics.jsonl").exists():
        time.sleep(0.05)
    time.sleep(0.3)  # inside epoch 2
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    summary = read_json(stopped / "summary.json")
    assert summary["status"] == "interrupted"
    assert "Traceback" not in err
    proc = run_dlrun(f"resume={stopped}", "trainer.slow_rank_delay_ms=0")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert_same_weights(weights(full), weights(stopped), atol=0)  # bit-identical
    assert read_json(stopped / "summary.json")["test_loss"] == read_json(full / "summary.json")["test_loss"]


def test_a_rank_that_dies_ends_the_group_naming_it(tmp_path):
    run = tmp_path / "run"
    proc = subprocess.Popen([str(DLRUN), *SMALL, "trainer.epochs=50", "trainer.batch_size=17", "trainer.devices=2",
                             "trainer.slow_rank_delay_ms=20", f"hydra.run.dir={run}"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "CI": "1", "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 120
    while time.time() < deadline and not (run / "checkpoints" / "last.pt").exists():
        time.sleep(0.05)
    workers = sorted(int(p) for p in _descendants(proc.pid) if b"spawn_main" in _cmdline(p))
    assert len(workers) == 2, workers  # the launcher starts them in rank order
    rank1 = workers[1:]
    os.kill(rank1[0], signal.SIGKILL)
    out, err = proc.communicate(timeout=120)
    assert_clean_error(subprocess.CompletedProcess(proc.args, proc.returncode, out, err), 1,
                       f"rank 1 (pid {rank1[0]}) was killed by SIGKILL", f"dlrun resume={run}")
    assert (run / "checkpoints" / "last.pt").exists()
    assert run_dlrun(f"resume={run}", "trainer.epochs=2", "trainer.slow_rank_delay_ms=0").returncode == 0


def _descendants(pid: int) -> list[str]:
    out = []
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        out += [child, *_descendants(int(child))]
    return out


def _cmdline(pid: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def test_a_sweep_of_two_jobs_each_in_two_processes(tmp_path):
    proc = run_dlrun("-m", *SMALL, "trainer.epochs=1", "trainer.batch_size=17", "trainer.devices=2",
                     "optimizer.lr=0.05,0.1", f"hydra.sweep.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = sorted(p for p in tmp_path.iterdir() if p.is_dir() and (p / "summary.json").exists())
    assert [p.name for p in runs] == ["0", "1"]
    lrs = []
    for run in runs:
        s = read_json(run / "summary.json")
        assert s["status"] == "completed" and s["processes"] == 2
        lrs.append(read_json(run / "summary.json")["last_epoch"]["lr"])
    assert lrs == [0.05, 0.1]
    assert len([p for p in tmp_path.iterdir() if p.is_dir() and not p.name.startswith(".")]) == 2


@pytest.mark.parametrize("overrides, message", [
    (["trainer.devices=64"], "trainer.devices=64 but this machine has"),
    (["trainer.devices=2", "trainer.batch_size=full"], "each process needs its own batches"),
    (["trainer.devices=2", "model=gan"], "runs its own update"),
    (["trainer.strategy=param_server"], "trainer.strategy"),
])
def test_what_cannot_run_in_several_processes_is_one_line_before_they_start(tmp_path, overrides, message):
    proc = run_dlrun(*overrides, "debug=smoke", f"hydra.run.dir={tmp_path / 'run'}")
    assert_clean_error(proc, 2, message)
    assert not (tmp_path / "run" / "summary.json").exists()


def test_a_port_in_use_is_one_line(tmp_path):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": "2", "RANK": "0",
               "LOCAL_RANK": "0", "TORCH_NCCL_ASYNC_ERROR_HANDLING": "1"}
        proc = run_dlrun("debug=smoke", f"hydra.run.dir={tmp_path / 'run'}", env=env, timeout=120)
    assert_clean_error(proc, 1, "could not join the process group", f"127.0.0.1:{port}")
