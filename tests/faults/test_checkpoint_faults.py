"""Damaged, malicious and unwritable checkpoints; run folders from elsewhere that try to run code."""
import errno
import json
import shutil

import pytest
import torch

from conftest import assert_clean_error, read_json, read_jsonl, run_dlrun
from faults.helpers import TINY, leftovers, load, run_patched

# Saves in a TINY run: steps 15 and 30, then best.pt and last.pt at the end of epoch 1; the 5th fails.
DISK_FULL_AT_FIFTH_SAVE = """
import errno, torch
_save, calls = torch.save, [0]
def save(obj, f, *a, **k):
    calls[0] += 1
    if calls[0] == 5:
        f.write(b"half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")
    return _save(obj, f, *a, **k)
torch.save = save
"""


def copy_run(src, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(src, dst)
    return dst


def files(run):
    """What the run wrote (.hydra/ is Hydra's record of the latest command)."""
    return {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file() and ".hydra" not in p.parts}


def test_a_truncated_last_pt_is_named_with_the_checkpoint_to_fall_back_to(baseline, tmp_path):
    run = copy_run(baseline, tmp_path)
    last = run / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[:1000])
    before = files(run)
    proc = run_dlrun(f"resume={run}")
    assert_clean_error(proc, 2, f"checkpoint {last} is corrupted", "1000 bytes", "truncated",
                       f"{run}/checkpoints/best.pt (epoch", f"`dlrun resume={run}/checkpoints/best.pt`")
    assert files(run) == before  # nothing was touched


@pytest.mark.slow
def test_resume_from_the_fallback_checkpoint_completes(baseline, tmp_path):
    run = copy_run(baseline, tmp_path)
    (run / "checkpoints" / "last.pt").write_bytes(b"garbage")
    proc = run_dlrun(f"resume={run}/checkpoints/best.pt")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert read_json(run / "summary.json")["test_loss"] == read_json(baseline / "summary.json")["test_loss"]


def test_a_checkpoint_crafted_to_run_code_is_refused_and_runs_nothing(baseline, tmp_path):
    from dlrun.train.checkpoint import _digest

    run, marker = copy_run(baseline, tmp_path), tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            import os
            return os.system, (f"touch {marker}",)

    last = run / "checkpoints" / "last.pt"
    torch.save({"model": Payload()}, last)
    # whoever crafted it can write a matching size/sha256 record too: the record is no defence, weights_only is
    (run / "checkpoints" / "last.pt.json").write_text(json.dumps({"file": "last.pt", **_digest(last)}))
    proc = run_dlrun(f"resume={run}")
    assert_clean_error(proc, 2, f"checkpoint {last} cannot be read safely", "GLOBAL posix.system",
                       "nothing in it was run")
    assert not marker.exists()


def test_a_run_folder_whose_overrides_would_run_code_is_refused(baseline, tmp_path):
    run, marker = copy_run(baseline, tmp_path), tmp_path / "pwned"
    saved = run / ".hydra" / "overrides.yaml"
    # a Hydra callback is instantiated from its _target_ at start-up: os.makedirs(name=marker)
    saved.write_text(f"- +hydra.callbacks.evil._target_=os.makedirs\n- +hydra.callbacks.evil.name={marker}\n")
    assert_clean_error(run_dlrun(f"resume={run}"), 2, "never Hydra's own settings", "Nothing was run")
    saved.write_text(f"- +model._target_=os.makedirs\n- +model._args_=[{marker}]\n")
    assert_clean_error(run_dlrun(f"resume={run}"), 2, "model._target_='os.makedirs' is not allowed")
    assert not marker.exists()


def test_a_full_disk_while_saving_keeps_the_previous_checkpoint(tmp_path):
    run = tmp_path / "run"
    proc = run_patched(DISK_FULL_AT_FIFTH_SAVE, *TINY, f"hydra.run.dir={run}")
    assert_clean_error(proc, 1, f"could not write checkpoint {run}/checkpoints/last.pt",
                       f"[Errno {errno.ENOSPC}] No space left on device", "The previous checkpoint is intact")
    assert load(run / "checkpoints" / "last.pt")["step"] == 40  # the end of epoch 1, size and sha256 checked
    assert load(run / "checkpoints" / "best.pt")["step"] == 40
    assert not leftovers(run)
    assert [r["epoch"] for r in read_jsonl(run / "metrics.jsonl")] == [1]
    summary = read_json(run / "summary.json")
    assert summary["status"] == "failed" and "No space left" in summary["error"]


def test_every_checkpoint_corrupted_is_one_clear_refusal(baseline, tmp_path):
    """Case 12: last.pt and best.pt both fail their check: named, with no fallback to offer (no recursion)."""
    run = copy_run(baseline, tmp_path)
    for name in ("last.pt", "best.pt"):
        path = run / "checkpoints" / name
        path.write_bytes(path.read_bytes()[:500])
    before = files(run)
    assert_clean_error(run_dlrun(f"resume={run}"), 2, f"checkpoint {run}/checkpoints/last.pt is corrupted",
                       f"No other checkpoint in {run}/checkpoints is intact")
    assert files(run) == before


@pytest.mark.parametrize("record", ["{}", "[]", '{"size": "big", "sha256": 3}', "not json"])
def test_a_malformed_checksum_record_is_named(baseline, tmp_path, record):
    """Case 13: a sidecar record that dlrun did not write is named, not a KeyError or AttributeError."""
    run = copy_run(baseline, tmp_path)
    (run / "checkpoints" / "last.pt.json").write_text(record)
    assert_clean_error(run_dlrun(f"resume={run}"), 2, f"the checksum record {run}/checkpoints/last.pt.json")
