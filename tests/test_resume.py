"""Interrupt a run with a signal, resume it, and land on exactly the uninterrupted run's numbers."""
import signal

import pytest
import torch

from conftest import assert_clean_error, read_json, read_jsonl, run_dlrun
from conftest import interrupt_after as interrupt_run

# Big enough that an epoch takes a while on 2 cores, so the signal lands mid-run; dropout exercises the RNG.
ARGS = ["trainer.epochs=6", "trainer.deterministic=true", "model.hidden=[256,256]", "model.dropout=0.2",
        "trainer.batch_size=16", "logger=quiet"]


def interrupt_after(run_dir, rows: int, sig: int) -> int:
    return interrupt_run(ARGS, run_dir, rows, sig)


def test_sigterm_then_resume_matches_the_uninterrupted_run(tmp_path):
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert run_dlrun(*ARGS, f"hydra.run.dir={full}").returncode == 0

    code = interrupt_after(cut, rows=2, sig=signal.SIGTERM)
    assert code == 143
    summary = read_json(cut / "summary.json")
    assert summary["status"] == "interrupted" and 2 <= summary["epochs_completed"] < 6
    state = torch.load(cut / "checkpoints" / "last.pt", weights_only=True)
    assert state["epoch"] == summary["epochs_completed"]

    proc = run_dlrun(f"resume={cut}")
    assert proc.returncode == 0, proc.stderr
    a, b = read_json(full / "summary.json"), read_json(cut / "summary.json")
    assert b["status"] == "completed" and b["epochs_completed"] == 6
    assert b["test_loss"] == pytest.approx(a["test_loss"], abs=1e-6)
    assert b["test_accuracy"] == a["test_accuracy"]
    rows_a, rows_b = read_jsonl(full / "metrics.jsonl"), read_jsonl(cut / "metrics.jsonl")
    assert [r["epoch"] for r in rows_b] == list(range(1, 7))  # no duplicated or missing rows
    assert [r["train_loss"] for r in rows_b] == pytest.approx([r["train_loss"] for r in rows_a], abs=1e-6)


@pytest.mark.slow  # exit 130 is also checked by tests/faults (second Ctrl-C)
def test_sigint_exits_130_and_resume_can_extend_the_run(tmp_path):
    cut = tmp_path / "cut"
    assert interrupt_after(cut, rows=1, sig=signal.SIGINT) == 130
    assert read_json(cut / "summary.json")["status"] == "interrupted"
    proc = run_dlrun(f"resume={cut}", "trainer.epochs=8")
    assert proc.returncode == 0, proc.stderr
    assert [r["epoch"] for r in read_jsonl(cut / "metrics.jsonl")] == list(range(1, 9))
    assert read_json(cut / "summary.json")["epochs_completed"] == 8


def test_resume_of_a_folder_without_a_run_is_refused(tmp_path):
    assert_clean_error(run_dlrun(f"resume={tmp_path}"), 2, "cannot resume", "checkpoints/last.pt")


def test_a_new_run_never_overwrites_an_existing_run_folder(tmp_path):
    run_dir = tmp_path / "r"
    assert run_dlrun("debug=smoke", f"hydra.run.dir={run_dir}").returncode == 0
    before = {p.name: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    proc = run_dlrun("debug=smoke", "model=cnn", f"hydra.run.dir={run_dir}")
    assert_clean_error(proc, 2, "already holds a run", f"dlrun resume={run_dir}")
    assert {p.name: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before


def test_a_resumed_run_remembers_which_epoch_was_best(tmp_path):
    """A GAN's validation MMD is best at epoch 1 here, then worse: the resumed run must keep epoch 1's best.pt,
    not take its first epoch after the resume for an improvement (the checkpoints hold the best value so far)."""
    import dlrun

    common = ["experiment=gan_digits", "optimizer.lr=0.001", "logger=quiet"]
    full = dlrun.run([*common, "trainer.epochs=4"], run_dir=str(tmp_path / "full"))["summary"]
    dlrun.run([*common, "trainer.epochs=2"], run_dir=str(tmp_path / "cut"))
    state = torch.load(tmp_path / "cut" / "checkpoints" / "last.pt", weights_only=True)
    assert {"best", "best_epoch"} <= set(state["callbacks"]["ModelCheckpoint"])
    resumed = dlrun.run([f"resume={tmp_path / 'cut'}", "trainer.epochs=4"])["summary"]
    assert full["best_epoch"] == resumed["best_epoch"] == 1
    assert resumed["test_loss"] == pytest.approx(full["test_loss"], abs=1e-6)
