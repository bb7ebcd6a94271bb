"""A real full disk (a small tmpfs), at every stage of a run: one line, exit 1, a folder that resumes."""
import json
import os
import subprocess

import pytest

from conftest import read_jsonl, run_dlrun
from faults.helpers import TINY, load

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root (CI runs as root)")

# From too small for the run's folder records to enough for all of it: each size fails at another stage
# (the config records, the metrics, inside torch.save, the summary, the PNG).
SIZES_KB = [12, 40, 96]
SLOW_SIZES_KB = [8, 16, 24, 32, 48, 56, 64, 72, 80, 112, 128, 144, 160, 192, 256, 384]


class Tmpfs:
    def __init__(self, mount, kb):
        self.mount, self.kb = mount, kb

    def __enter__(self):
        self.mount.mkdir(exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.kb}k", "tmpfs", str(self.mount)], check=True)
        return self.mount

    def __exit__(self, *exc):
        subprocess.run(["umount", str(self.mount)], check=True)


def check_full_disk_run(tmp_path, kb):
    with Tmpfs(tmp_path / "disk", kb) as disk:
        run = disk / "run"
        proc = run_dlrun(*TINY, "logger.console=true", f"hydra.run.dir={run}")
        out = proc.stdout + proc.stderr
        assert "Traceback" not in out and "RuntimeError" not in out, out
        if proc.returncode == 0:
            return "completed"
        assert proc.returncode == 1, out
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and ("the disk is full" in errors[0] or "No space left on device" in errors[0]), out
        if "No checkpoint was written yet" in out or "No checkpoint was written before it" in out:
            assert not (run / "checkpoints" / "last.pt").exists()
        if "The previous checkpoint is intact" in out:  # it never claims one that is not there
            named = errors[0].split("could not write checkpoint ", 1)[1].split(": [Errno", 1)[0]
            assert load(named)["model"]
        if (run / "summary.json").exists():  # written when space allowed: valid, and it says what failed
            summary = json.loads((run / "summary.json").read_text())
            assert summary["status"] == "failed" and summary["error"]
        return "failed"


@pytest.mark.parametrize("kb", SIZES_KB)
def test_a_full_disk_at_each_stage_is_one_line(tmp_path, kb):
    check_full_disk_run(tmp_path, kb)


@pytest.mark.slow
@pytest.mark.parametrize("kb", SLOW_SIZES_KB)
def test_a_full_disk_at_more_sizes_is_one_line(tmp_path, kb):
    check_full_disk_run(tmp_path, kb)


def test_after_a_full_disk_freeing_space_and_resuming_completes(tmp_path):
    """The run stops on the full disk; with space freed, `dlrun resume=RUN` ends with each epoch once."""
    with Tmpfs(tmp_path / "disk", 1024) as disk:
        filler = disk / "filler"
        filler.write_bytes(b"\0" * (1024 - 150) * 1024)  # about 150 KB left: the first epoch fits, the rest not
        run = disk / "run"
        proc = run_dlrun(*TINY, f"hydra.run.dir={run}")
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stdout + proc.stderr
        filler.unlink()
        proc = run_dlrun(f"resume={run}")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert [r["epoch"] for r in read_jsonl(run / "metrics.jsonl")] == [1, 2, 3]
