"""SWEEP_DIR/ledger.jsonl: one line per job and launch (overrides, status, final metrics, wall time, error)."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

LEDGER = "ledger.jsonl"

RUN_ID_ENV = "DLRUN_SWEEP_ID"  # one id per `dlrun -m` launch, inherited by launcher worker processes

FINE = ("completed", "skipped")  # statuses that leave the exit code at 0

def read_ledger(sweep_dir) -> list[dict]:
    """The ledger's entries, oldest first; a line cut short by a crash is skipped."""
    path = Path(sweep_dir) / LEDGER
    if not path.exists():
        return []
    entries = []
    for line in path.read_text().splitlines():
        try:
            entries.append(json.loads(line))
        except ValueError:
            continue
    return entries

def append_ledger(sweep_dir, entry: dict) -> None:
    """One JSON line in a single O_APPEND write, so jobs running in parallel never interleave."""
    data = (json.dumps(entry, default=str) + "\n").encode()
    Path(sweep_dir).mkdir(parents=True, exist_ok=True)
    fd = os.open(Path(sweep_dir) / LEDGER, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)

def read_summary(folder: Path) -> dict | None:
    try:
        return json.loads((Path(folder) / "summary.json").read_text())
    except (OSError, ValueError):
        return None

def _finite(v):
    return v if not isinstance(v, float) or math.isfinite(v) else None

def final_metrics(summary: dict | None) -> dict:
    """What the ledger keeps of a summary: test metrics, the best validation value, the last epoch's row."""
    if not summary:
        return {}
    out = {k: _finite(v) for k, v in (summary.get("last_epoch") or {}).items()
           if k.startswith(("train_", "val_"))}
    out.update({k: _finite(v) for k, v in summary.items()
                if k.startswith("test_") and isinstance(v, (int, float)) and not isinstance(v, bool)})
    if summary.get("best_monitor"):
        out[f"best_{summary['best_monitor']}"] = _finite(summary.get("best_value"))
    out.update(epochs=summary.get("epochs_completed"), best_epoch=summary.get("best_epoch"))
    if summary.get("headline"):  # the task's own test metric (test_miou, test_map_50, ...), shown first
        out["headline"] = summary["headline"]
    return out
