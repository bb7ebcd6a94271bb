"""kill -9 at random moments of the checkpoint write path, then `dlrun resume=RUN`: every time, each epoch's
metrics row exactly once and the uninterrupted run's test loss, bit for bit.

The moments are the checkpoint write path's own steps, counted in one uninterrupted run: each chunk
torch.save writes, each fsync, and the moments just before and just after each rename (os.replace) of a
checkpoint or of its size/sha256 record.
"""
import json
import random
import signal

import pytest

from conftest import read_json, read_jsonl, run_dlrun
from faults.helpers import TINY, run_patched

KILL_AT = """
import atexit, os, signal
from dlrun.train import checkpoint
KILL_AT, COUNT_FILE, seen, saving = {kill_at}, {count_file!r}, [0], [False]
def tick():
    if not saving[0]:
        return
    seen[0] += 1
    if seen[0] == KILL_AT:
        os.kill(os.getpid(), signal.SIGKILL)
_save_checkpoint = checkpoint.save_checkpoint
def save_checkpoint(*a, **k):
    saving[0] = True
    try:
        return _save_checkpoint(*a, **k)
    finally:
        saving[0] = False
checkpoint.save_checkpoint = save_checkpoint
import dlrun.train.trainer
dlrun.train.trainer.save_checkpoint = save_checkpoint
_replace, _fsync, _write = os.replace, os.fsync, checkpoint._WriteErrors.write
def replace(src, dst, *a, **k):
    tick()
    _replace(src, dst, *a, **k)
    tick()
def fsync(fd):
    tick()
    _fsync(fd)
def write(self, data):
    tick()
    return _write(self, data)
os.replace, os.fsync, checkpoint._WriteErrors.write = replace, fsync, write
if COUNT_FILE:
    atexit.register(lambda: open(COUNT_FILE, "w").write(str(seen[0])))
"""


@pytest.fixture(scope="module")
def moments(tmp_path_factory):
    """How many kill points an uninterrupted TINY run passes."""
    folder = tmp_path_factory.mktemp("count")
    proc = run_patched(KILL_AT.format(kill_at=0, count_file=str(folder / "count")), *TINY,
                       f"hydra.run.dir={folder / 'run'}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return int((folder / "count").read_text())


def kill_and_resume(tmp_path, baseline, kill_at: int) -> None:
    run = tmp_path / f"kill{kill_at}"
    proc = run_patched(KILL_AT.format(kill_at=kill_at, count_file=""), *TINY, f"hydra.run.dir={run}")
    assert proc.returncode == -signal.SIGKILL, (kill_at, proc.stdout + proc.stderr)
    proc = run_dlrun(f"resume={run}")
    assert proc.returncode == 0, (kill_at, proc.stdout + proc.stderr)
    assert [r["epoch"] for r in read_jsonl(run / "metrics.jsonl")] == [1, 2, 3], kill_at
    a, b = read_json(baseline / "summary.json"), read_json(run / "summary.json")
    assert (b["status"], b["test_loss"], b["test_accuracy"]) == ("completed", a["test_loss"], a["test_accuracy"]), kill_at
    assert [r["train_loss"] for r in read_jsonl(run / "metrics.jsonl")] == \
        [r["train_loss"] for r in read_jsonl(baseline / "metrics.jsonl")], kill_at


def test_a_kill_at_a_random_moment_of_the_write_path_then_resume(tmp_path, baseline, moments):
    kill_and_resume(tmp_path, baseline, random.Random().randint(1, moments))  # another moment every time


@pytest.mark.slow
def test_fifty_random_kills_then_resume(tmp_path, baseline, moments):
    """The campaign of issue 13: 50 random moments (seeded), each killed, then resumed."""
    rng = random.Random(2026)
    points = sorted(rng.sample(range(1, moments + 1), min(50, moments)))
    for kill_at in points:
        kill_and_resume(tmp_path, baseline, kill_at)
    print(json.dumps({"moments": moments, "killed_at": points}))
