"""A run folder has one writer at a time, records only what a run used, and is never left unusable."""
import os
import shlex
import shutil
import signal
import subprocess
import time

import pytest

from conftest import assert_clean_error, read_json, read_jsonl, run_dlrun, run_main_inprocess
from faults.helpers import TINY, after_step, leftovers, load, popen_patched, run_patched

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a file system needs root (CI runs as root)")


def files(run):
    """Every file of a run folder (its records included) and its bytes."""
    return {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}


SLOW_EPOCHS = """
import time
from dlrun.train.loop import SupervisedLoop as Trainer
_epoch = Trainer._train_epoch
def slow_epoch(self, epoch):
    time.sleep(1.5)
    return _epoch(self, epoch)
Trainer._train_epoch = slow_epoch
"""


def logged(log, text: str, proc, after: int = 0, timeout: float = 120):
    """Wait until the process has written `text` into RUN/dlrun.log (after its first `after` characters)."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if log.exists() and text in log.read_text()[after:]:
            return
        time.sleep(0.05)
    raise AssertionError(f"{log}: {text!r} never logged")


def test_two_processes_never_write_one_run_folder(tmp_path, baseline):
    """Case 5: a run (or a resume) holds its folder; a second dlrun on it stops at once naming the holder's pid,
    and the metrics hold each epoch once."""
    run = tmp_path / "run"
    first = popen_patched(SLOW_EPOCHS, *TINY, f"hydra.run.dir={run}", stderr_file=tmp_path / "new.err")
    logged(run / "dlrun.log", "training: epochs 1..3", first)
    assert_clean_error(run_dlrun(*TINY, f"hydra.run.dir={run}"), 1,
                       f"{run} is in use by another dlrun process (pid {first.pid})")
    first.send_signal(signal.SIGKILL)
    first.wait()
    seen = len((run / "dlrun.log").read_text())
    first = popen_patched(SLOW_EPOCHS, f"resume={run}", stderr_file=tmp_path / "resume.err")
    logged(run / "dlrun.log", "dlrun 0.1.0: ", first, after=seen)  # it holds the lock by then
    assert_clean_error(run_dlrun(f"resume={run}"), 1, f"{run} is in use by another dlrun process (pid {first.pid})")
    assert first.wait(timeout=240) == 0, (tmp_path / "resume.err").read_text()
    assert [r["epoch"] for r in read_jsonl(run / "metrics.jsonl")] == [1, 2, 3]
    assert read_json(run / "summary.json")["test_loss"] == read_json(baseline / "summary.json")["test_loss"]


def test_a_resume_records_what_it_uses_and_refuses_the_rest_untouched(tmp_path, baseline, monkeypatch, capsys):
    """Cases 10 and 11: the learning rate may change and then really applies; model, data and optimizer may
    not, and a refused resume changes no file (its records included), so the folder stays resumable."""
    import dlrun

    run, other = tmp_path / "run", tmp_path / "cnn"
    shutil.copytree(baseline, run)
    before = files(run)
    dlrun.run(["model=cnn", *TINY[:4], "trainer.epochs=1"], run_dir=str(other))
    assert_clean_error(run_dlrun(f"resume={run}", "model=cnn"), 2, f"cannot resume {run}",  # the real CLI, once
                       "model.name ('mlp' -> 'cnn')", "Nothing was changed")
    for args, fragment in ((["dataset=synthetic"], "dataset.name ('digits' -> 'synthetic')"),
                           (["model.hidden=[64]"], "model.hidden ([32] -> [64])"),
                           (["optimizer=sgd"], "optimizer.name ('adam' -> 'sgd')"),
                           (["trainer.epochs=2"], "it has completed 3 epochs already")):
        code, out = run_main_inprocess([f"resume={run}", *args], monkeypatch, capsys)
        assert code == 2 and fragment in out and "Nothing was changed" in out, (args, out)
        assert files(run) == before, args
    shutil.copy(other / "checkpoints" / "last.pt", run / "checkpoints" / "last.pt")  # another model's checkpoint
    shutil.copy(other / "checkpoints" / "last.pt.json", run / "checkpoints" / "last.pt.json")
    code, out = run_main_inprocess([f"resume={run}"], monkeypatch, capsys)
    assert code == 2 and "model.name ('cnn' -> 'mlp')" in out, out
    shutil.copy(baseline / "checkpoints" / "last.pt", run / "checkpoints" / "last.pt")
    shutil.copy(baseline / "checkpoints" / "last.pt.json", run / "checkpoints" / "last.pt.json")
    (run / ".hydra" / "overrides.yaml").write_text("")
    code, out = run_main_inprocess([f"resume={run}"], monkeypatch, capsys)
    assert code == 2 and "its .hydra/overrides.yaml is empty" in out, out
    shutil.copy(baseline / ".hydra" / "overrides.yaml", run / ".hydra" / "overrides.yaml")
    assert files(run) == before

    proc = run_dlrun(f"resume={run}", "trainer.epochs=5", "optimizer.lr=0.02")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "optimizer.lr changed on resume: 0.001 -> 0.02, from optimizer step 121 on" in proc.stdout
    rows = read_jsonl(run / "metrics.jsonl")
    assert [(r["epoch"], r["lr"]) for r in rows] == [(1, 0.001), (2, 0.001), (3, 0.001), (4, 0.02), (5, 0.02)]
    config = (run / ".hydra" / "config.yaml").read_text()
    assert "lr: 0.02" in config and "epochs: 5" in config
    assert "optimizer.lr=0.02" in (run / ".hydra" / "overrides.yaml").read_text()
    assert read_json(run / "summary.json")["resume_changes"]["optimizer.lr"] == {"from": 0.001, "to": 0.02}
    assert "optimizer.lr changed on resume" in (run / "dlrun.log").read_text()


def test_deleted_checkpoints_never_make_a_mixed_summary(tmp_path):
    """Case 6: best.pt gone before the test pass: the test uses the final weights and says so."""
    run = tmp_path / "run"
    patch = ("from dlrun.train.callbacks import ModelCheckpoint\n"
             "ModelCheckpoint.improved = lambda self, value: self.best_epoch == 0  # epoch 1 is the best\n"
             + after_step(60, "import shutil; shutil.rmtree(self.trainer.run_dir / 'checkpoints')"))
    proc = run_patched(patch, *TINY, f"hydra.run.dir={run}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = read_json(run / "summary.json")
    assert summary["best_epoch"] == 1
    assert summary["test_weights"]["checkpoint"] is None and summary["test_weights"]["epoch"] == 3
    assert "checkpoints/best.pt (epoch 1) could not be used" in summary["test_weights"]["note"]
    assert "test used the final weights (epoch 3)" in proc.stdout
    assert load(run / "checkpoints" / "last.pt")["epoch"] == 3  # rewritten at the end of epochs 2 and 3


@pytest.mark.parametrize("fault", ["kill", "disk full"])
def test_a_run_whose_first_checkpoint_failed_can_be_resumed(tmp_path, baseline, fault):
    """Case 7: a crash or a full disk during the very first checkpoint write; `dlrun resume=DIR` starts it again."""
    run = tmp_path / "run"
    action = "os.kill(os.getpid(), signal.SIGKILL)" if fault == "kill" else \
        "raise OSError(errno.ENOSPC, 'No space left on device')"
    patch = f"""
import errno, os, signal, torch
_save = torch.save
def save(obj, f, *a, **k):
    f.write(b"half a checkpoint")
    {action}
torch.save = save
"""
    proc = run_patched(patch, *TINY, f"hydra.run.dir={run}")
    if fault == "kill":
        assert proc.returncode == -signal.SIGKILL
    else:
        assert_clean_error(proc, 1, "No space left on device", "No checkpoint was written before it")
        assert "previous checkpoint is intact" not in proc.stderr
    assert not (run / "checkpoints" / "last.pt").exists()
    assert_clean_error(run_dlrun(*TINY, f"hydra.run.dir={run}"), 2, "already holds a run", f"dlrun resume={run}")
    proc = run_dlrun(f"resume={run}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "has no checkpoint yet: the run starts again from its first step" in proc.stdout
    assert [r["epoch"] for r in read_jsonl(run / "metrics.jsonl")] == [1, 2, 3]
    assert read_json(run / "summary.json")["test_loss"] == read_json(baseline / "summary.json")["test_loss"]
    assert not leftovers(run)  # the torn first attempt was cleared before the run started again


def test_a_run_folder_with_spaces_quotes_and_other_letters_resumes_as_printed(tmp_path, baseline):
    """Case 9: the printed "continue with" command works as printed, whatever the folder's name."""
    run = tmp_path / "ünï's dir" / "ça va" / "run"
    proc = run_patched(after_step(50, "os.kill(os.getpid(), signal.SIGUSR1)"), *TINY, "logger.console=true",
                       f"hydra.run.dir={run}")
    assert proc.returncode == 75, proc.stdout + proc.stderr
    hint = proc.stdout[proc.stdout.index("continue with `") + 15:]
    command = shlex.split(hint[:hint.index("`")])
    assert command[0] == "dlrun"
    proc = run_dlrun(*command[1:])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [r["epoch"] for r in read_jsonl(run / "metrics.jsonl")] == [1, 2, 3]
    assert read_json(run / "summary.json")["test_loss"] == read_json(baseline / "summary.json")["test_loss"]
    assert f"hydra.run.dir={run}" not in (run / ".hydra" / "overrides.yaml").read_text()


def test_a_run_that_never_started_leaves_nothing_behind(tmp_path, monkeypatch, capsys):
    """Issue 14, item 7: errors after composition remove what the run made; a successful run logs its events."""
    proc = run_dlrun("device=cuda:7", "debug=smoke", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert list(tmp_path.iterdir()) == []  # not even outputs/DATE/
    monkeypatch.chdir(tmp_path)
    for args in (["++optimizer.foo=1"], ["model.hidden=[a,b]"]):
        assert run_main_inprocess([*args, "debug=smoke"], monkeypatch, capsys)[0] == 2
        assert list(tmp_path.iterdir()) == [], args
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    assert run_dlrun("device=cuda:7", "debug=smoke", f"hydra.run.dir={mine}").returncode == 2
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]  # what was there stays; the rest is gone
    proc = run_dlrun("debug=smoke", "hydra.verbose=true", f"hydra.run.dir={tmp_path / 'ok'}")
    assert proc.returncode == 0, proc.stderr
    log = (tmp_path / "ok" / "dlrun.log").read_text()
    for event in ("new run in", "config:", "epoch 1: step=2", "saved checkpoints/best.pt (epoch 1",
                  "completed after 1 epoch(s), test_loss="):
        assert event in log, event


@as_root
def test_unwritable_and_too_long_run_folders_are_one_line_errors(tmp_path):
    """Case 17: a read-only file system and a name the file system cannot hold: exit 1, no traceback."""
    ro = tmp_path / "ro"
    ro.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(ro)], check=True)
    try:
        proc = run_dlrun("debug=smoke", f"hydra.run.dir={ro / 'run'}")
        assert_clean_error(proc, 1, f"cannot create the run folder {ro / 'run'}", "read-only")
    finally:
        subprocess.run(["umount", str(ro)], check=True)
    long = tmp_path / ("x" * 300) / "run"
    assert_clean_error(run_dlrun("debug=smoke", f"hydra.run.dir={long}"), 1, "has 300 bytes", "allows 255")
