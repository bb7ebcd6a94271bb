"""kill -9, SIGUSR1 and a second Ctrl-C: nothing is lost, and the resumed run is the uninterrupted one."""
import json
import signal

import pytest
import torch

from conftest import assert_clean_error, read_json, read_jsonl, run_dlrun
from faults.helpers import TINY, after_step, leftovers, load, run_patched

# The TINY run has 40 steps per epoch and saves last.pt every 15 steps (and at each epoch's end).
SECOND_CTRL_C_WHILE_SAVING = """
import builtins, time, torch
_save = torch.save
def save(obj, f, *a, **k):
    _save(obj, f, *a, **k)  # the temp file is written; before it is renamed, Ctrl-C again
    if getattr(builtins, "FIRST_CTRL_C", False):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(600)
torch.save = save
"""


def test_kill9_then_sigusr1_then_resume_ends_bit_identical(baseline, tmp_path):
    run = tmp_path / "run"
    # kill -9 at step 52: the newest checkpoint is from step 45 (5 steps into epoch 2); 7 steps are lost
    proc = run_patched(after_step(52, "os.kill(os.getpid(), signal.SIGKILL)"), *TINY, f"hydra.run.dir={run}")
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    record = json.loads((run / "checkpoints" / "last.pt.json").read_text())
    assert (record["epoch"], record["step"], record["epoch_step"]) == (1, 45, 5)
    assert [r["epoch"] for r in read_jsonl(run / "metrics.jsonl")] == [1]
    assert not leftovers(run)

    # resumed; SLURM's SIGUSR1 at step 100 (epoch 3): saved there, exit 75, summary `interrupted`
    proc = run_patched(after_step(100, "os.kill(os.getpid(), signal.SIGUSR1)"), f"resume={run}")
    assert proc.returncode == 75, proc.stdout + proc.stderr
    assert "SIGUSR1 received" in proc.stderr and "Traceback" not in proc.stderr
    summary = read_json(run / "summary.json")
    assert summary["status"] == "interrupted" and summary["signal"] == signal.SIGUSR1
    state = load(run / "checkpoints" / "last.pt")
    assert (state["epoch"], state["step"], state["epoch_step"]) == (2, 100, 20)
    assert [r["epoch"] for r in read_jsonl(run / "metrics.jsonl")] == [1, 2]

    # resumed again: the uninterrupted run's numbers, bit for bit, and each metrics row once
    proc = run_dlrun(f"resume={run}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    a, b = read_json(baseline / "summary.json"), read_json(run / "summary.json")
    assert b["status"] == "completed" and b["test_loss"] == pytest.approx(a["test_loss"], abs=1e-6)
    assert b["test_accuracy"] == a["test_accuracy"]
    rows_a, rows_b = read_jsonl(baseline / "metrics.jsonl"), read_jsonl(run / "metrics.jsonl")
    assert [r["epoch"] for r in rows_b] == [1, 2, 3]
    for key in ("step", "train_loss", "train_accuracy", "val_loss", "val_accuracy"):
        assert [r[key] for r in rows_b] == [r[key] for r in rows_a], key
    assert len((run / "metrics.csv").read_text().splitlines()) == 1 + 3
    wa, wb = load(baseline / "checkpoints" / "last.pt")["model"], load(run / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_a_second_ctrl_c_aborts_at_once_and_keeps_the_last_checkpoint(tmp_path):
    run = tmp_path / "run"
    first = after_step(50, "os.kill(os.getpid(), signal.SIGINT); import builtins; builtins.FIRST_CTRL_C = True")
    proc = run_patched(first + SECOND_CTRL_C_WHILE_SAVING, *TINY, f"hydra.run.dir={run}", timeout=300)
    assert_clean_error(proc, 130, "SIGINT received: finishing the current step and saving",
                       "aborted by a second Ctrl-C")  # and it did not wait for the 600 s save
    summary = read_json(run / "summary.json")
    assert summary["status"] == "interrupted" and summary["aborted"] is True
    assert load(run / "checkpoints" / "last.pt")["step"] == 45  # the save at step 50 never replaced it
    assert not leftovers(run)
    assert [r["epoch"] for r in read_jsonl(run / "metrics.jsonl")] == [1]


def test_exported_safetensors_hold_the_best_weights(baseline):
    from safetensors.torch import load_file

    exported = load_file(baseline / "model.safetensors")
    best = load(baseline / "checkpoints" / "best.pt")["model"]
    assert exported.keys() == best.keys()
    assert all(torch.equal(exported[k], best[k]) for k in best)
