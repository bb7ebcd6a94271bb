"""What dlrun prints, as a piped CI log shows it: epoch lines within 80 columns, one per epoch, named by job in
a sweep; plain progress lines during a long epoch; the sweep's final table whole. And the live bar's ETA
and its room for a signal's notice."""
import io
import re

import pytest
from rich.console import Console

from conftest import run_dlrun

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
NUMBER = r"[-+0-9.e]+"


def epoch_row(prefix: str = "") -> re.Pattern:
    """A whole epoch line: the epoch and its six numbers (losses, accuracies, lr, time) on one line."""
    return re.compile(rf"^{re.escape(prefix)}\s*\d+(\s+{NUMBER}){{6}}$")


def test_a_piped_run_prints_one_line_per_epoch_within_80_columns(tmp_path):
    proc = run_dlrun("debug=smoke", "trainer.epochs=2", f"hydra.run.dir={tmp_path / 'run'}")  # stdout is a pipe
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    header = next(ln for ln in lines if ln.split()[:1] == ["epoch"])
    assert header.split() == ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "time_s"]
    rows = [ln for ln in lines if epoch_row().match(ln)]
    assert [ln.split()[0] for ln in rows] == ["1", "2"], proc.stdout
    assert all(len(ln) <= 80 for ln in [header, *rows]), proc.stdout
    assert "[job" not in proc.stdout  # a single run has no job number


def test_sweep_jobs_label_their_lines_log_progress_and_end_with_a_whole_table(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_dlrun("-m", "debug=smoke", "trainer.log_every=1", "optimizer=sgd,adam", "optimizer.lr=0.001",
                     f"hydra.sweep.dir={sweep}", env={"DLRUN_PROGRESS_EVERY": "0"})
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    for job in (0, 1):
        mine = [ln for ln in out.splitlines() if ln.startswith(f"[job {job}] ")]
        assert any(epoch_row(f"[job {job}]").match(ln) for ln in mine), out
        assert all(len(ln) <= 80 for ln in mine), mine
        # debug=smoke: 2 steps; a line after step 1 (every 0 s here); the epoch's own line follows step 2
        assert [ln for ln in mine if ": step " in ln] == [next(ln for ln in mine if ln.startswith(
            f"[job {job}] epoch 1: step 1/2 (50%), loss "))], mine
        assert re.search(rf"\[job {job}\] dlrun: completed", out)
    table = out[out.index(f"sweep {sweep}: 2 jobs"):out.index("Results: dlrun report")]
    assert "…" not in table, table
    header = next(ln for ln in table.splitlines() if "job" in ln and "optimizer" in ln)
    assert header.index("optimizer") < header.index("test_accuracy")  # the overrides first
    assert re.search(r"│ 0\s+│ sgd\s+│", table) and re.search(r"│ 1\s+│ adam\s+│", table), table
    caption = "same in every row: debug=smoke, trainer.log_every=1, optimizer.lr=0.001, status=completed, epochs=1"
    assert caption in table, table
    # every sweep, not only a failed one, ends with the command that runs it again into the same folder
    assert "The same command again (with new values, say) runs only what is not done yet" in out, out
    assert f"hydra.sweep.dir={sweep}" in out[out.index("The same command again"):]


def test_ctrl_c_on_a_terminal_is_said_on_a_line_of_its_own(tmp_path):
    """Item 10: on a real (pseudo) terminal, the run's live bar and the Ctrl-C notice never share a line."""
    import os
    import pty
    import signal
    import subprocess
    import time

    from conftest import DLRUN, ROOT

    leader, follower = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != "CI"}  # a live bar needs a terminal outside CI
    proc = subprocess.Popen([str(DLRUN), "trainer.epochs=200", "trainer.batch_size=1", "trainer.summary=false",
                             f"hydra.run.dir={tmp_path / 'run'}"], cwd=ROOT, env={**env, "COLUMNS": "80"},
                            stdin=follower, stdout=follower, stderr=follower, start_new_session=True)
    os.close(follower)
    seen, deadline, sent = b"", time.time() + 120, False
    while time.time() < deadline:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break  # the process has ended and closed the terminal
        seen += chunk
        if not sent and b"loss 0." in seen:  # the bar is on screen, with a loss
            proc.send_signal(signal.SIGINT)
            sent = True
    os.close(leader)
    assert proc.wait(timeout=60) == 130, seen.decode(errors="replace")[-2000:]
    import pyte  # a VT100 screen: what an 80-column terminal shows of those bytes

    screen = pyte.Screen(80, 2000)
    pyte.ByteStream(screen).feed(seen)
    lines = [ln.rstrip() for ln in screen.display]
    notice = [i for i, ln in enumerate(lines) if "received: finishing" in ln]
    assert notice, lines
    assert all(lines[i].startswith("SIGINT received: finishing the current step") for i in notice), \
        [lines[i] for i in notice]


# ---- the progress of one epoch, in this process ---------------------------------------------------------
def console(terminal: bool) -> Console:
    return Console(file=io.StringIO(), force_terminal=terminal, width=100)


def test_plain_progress_lines_come_every_n_seconds_when_not_a_terminal():
    from dlrun.train.loggers import EpochProgress

    quiet, chatty = console(False), console(False)
    for con, every in ((quiet, 3600), (chatty, 0)):
        p = EpochProgress(con, every=every)
        p.start(4, 10)
        for step in range(1, 11):
            p.update(step, 0.5)
        p.stop()
    assert quiet.file.getvalue() == ""
    lines = chatty.file.getvalue().splitlines()
    assert len(lines) == 9 and lines[0].startswith("epoch 4: step 1/10 (10%), loss 0.5000, 0:00:00 elapsed")
    assert "eta 0:00:00" in lines[-1]


def test_the_live_bar_shows_the_time_left_and_prints_a_signal_notice_on_its_own_line(monkeypatch):
    from dlrun.train.loggers import EpochProgress

    monkeypatch.delenv("CI", raising=False)
    con = console(True)
    p = EpochProgress(con)
    assert not p.live and not p.interrupt_notice("too early")
    p.start(2, 100)
    for step in range(1, 51):
        p.update(step, 0.25)
    assert p.live and p.interrupt_notice("SIGINT received: finishing the current step and saving\n")
    p.progress.refresh()
    p.stop()
    assert not p.live and not p.interrupt_notice("too late")
    lines = re.split(r"[\r\n]", ANSI.sub("", con.file.getvalue()))
    assert "SIGINT received: finishing the current step and saving" in lines  # not glued to the bar
    bar = [ln for ln in lines if ln.startswith("epoch 2 ") and "50/100" in ln][-1]
    assert re.search(r"loss 0\.2500 \d:\d\d:\d\d eta \d:\d\d:\d\d", bar), bar
    assert "too early" not in con.file.getvalue() and "too late" not in con.file.getvalue()


def test_the_run_summary_table_is_not_cut_at_80_columns_in_a_pipe():
    from dlrun.train.loggers import ConsoleLogger

    con = console(False)
    con.width = 80  # rich's width for a pipe
    run_dir = "/a/very/long/folder/name/for/runs/" + "x" * 70
    ConsoleLogger("unused", con).finish({"status": "completed", "model": "mlp", "run_dir": run_dir})
    assert run_dir in con.file.getvalue() and "…" not in con.file.getvalue()


def test_a_bad_progress_interval_is_refused_with_a_message(monkeypatch):
    from dlrun.errors import DlrunError
    from dlrun.train.loggers import EpochProgress

    monkeypatch.setenv("DLRUN_PROGRESS_EVERY", "often")
    with pytest.raises(DlrunError, match="DLRUN_PROGRESS_EVERY='often': give the seconds between progress lines"):
        EpochProgress(console(False))
    monkeypatch.setenv("DLRUN_PROGRESS_EVERY", "5")
    assert EpochProgress(console(False)).every == 5
