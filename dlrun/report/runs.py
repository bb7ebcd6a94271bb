"""Reading run folders for a report: summary.json, metrics.jsonl, .hydra/overrides.yaml and, in a sweep
folder, ledger.jsonl for jobs that failed before writing a summary; the rows of report.csv. Never imports torch."""
from __future__ import annotations

import csv
import glob
import io
import json
import math
import os
from pathlib import Path

import yaml

from dlrun.errors import DlrunError
from dlrun.metric_names import lower_is_better
from dlrun.sweep.ledger import read_ledger

def number(v) -> float | None:
    """A finite float, or None (missing, non-finite, not a number)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None

def natural(path: Path):
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in path.parts]

# ---- reading runs ---------------------------------------------------------------------------------
def _is_run(folder: Path) -> bool:
    return (folder / "summary.json").is_file() or (folder / ".hydra" / "overrides.yaml").is_file()

def find_runs(root: Path) -> list[Path]:
    """ROOT itself when it is a run, else every run folder below it, in natural order."""
    if _is_run(root):
        return [root]
    found = {p.parent for p in root.rglob("summary.json")}
    found |= {p.parent.parent for p in root.rglob("overrides.yaml") if p.parent.name == ".hydra"}
    return sorted(found, key=lambda p: natural(p.relative_to(root)))

def _read(path: Path, parse, default):
    try:
        return parse(path.read_text())
    except (OSError, ValueError, yaml.YAMLError):
        return default

def _jsonl(text: str) -> list[dict]:
    rows = []
    for line in text.splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return rows

def overrides_dict(overrides: list) -> dict[str, str]:
    """['optimizer.lr=0.1', '+x=1', '~y'] -> {'optimizer.lr': '0.1', 'x': '1', '~y': ''}"""
    return dict(o.lstrip("+").split("=", 1) if "=" in o else (o, "") for o in map(str, overrides))

class Malformed(Exception):
    """A run folder whose files are not what dlrun writes: skipped, with a warning naming it."""

def load_run(folder: Path, root: Path) -> dict:
    """{name, dir, overrides (key -> value), summary, rows, status, error} of one run folder; Malformed when
    its summary.json does not parse as a JSON object or its overrides.yaml is not a list."""
    summary = _read(folder / "summary.json", json.loads, None)
    if (folder / "summary.json").is_file() and not isinstance(summary, dict):
        raise Malformed(f"{folder / 'summary.json'} is not a JSON object")
    overrides = _read(folder / ".hydra" / "overrides.yaml", yaml.safe_load, None) or []
    if not isinstance(overrides, list):
        raise Malformed(f"{folder / '.hydra' / 'overrides.yaml'} is not a list of overrides")
    ledger = [e for e in read_ledger(folder.parent) if e.get("dir") == folder.name and e.get("status") != "skipped"]
    last = ledger[-1] if ledger else {}
    status = last.get("status") or (summary or {}).get("status") or "incomplete"
    name = str(folder.relative_to(root)) if folder != root else folder.name
    return {"name": name, "dir": str(folder), "summary": summary or {}, "overrides": overrides_dict(overrides),
            "rows": [r for r in _read(folder / "metrics.jsonl", _jsonl, []) if isinstance(r, dict)], "status": status,
            "error": last.get("error") or (summary or {}).get("error"), "wall_time": last.get("wall_time")}

def metric(run: dict, name: str) -> float | None:
    """`name` from the summary (test_accuracy, wall_time, ...), else its best value over the epochs
    (val_loss: the lowest, val_accuracy: the highest)."""
    if name in run["summary"]:
        return number(run["summary"][name])
    values = [v for v in (number(r.get(name)) for r in run["rows"]) if v is not None]
    if not values:
        return None
    return min(values) if lower_is_better(name) else max(values)

def varying_keys(runs: list[dict]) -> list[str]:
    """Override keys whose value is not the same in every run, in order of first appearance."""
    keys = dict.fromkeys(k for r in runs for k in r["overrides"])
    return [k for k in keys if len({r["overrides"].get(k) for r in runs}) > 1]

# ---- the table and the CSV ------------------------------------------------------------------------
def sort_value(value):
    """Numbers before strings, each in their natural order."""
    try:
        return (0, float(value), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(value))

def build_rows(runs: list[dict], metric_name: str, keys: list[str]) -> tuple[list[str], list[str], list[dict]]:
    """The CSV's columns, the table's (fewer), and one row per run (numbers left as numbers)."""
    base = metric_name[5:] if metric_name.startswith(("test_", "val_")) else "loss"
    val_col = f"val_{base}" if any(f"val_{base}" in r for run in runs for r in run["rows"]) else "val_loss"
    test_col = f"test_{base}" if any(f"test_{base}" in run["summary"] for run in runs) else "test_loss"
    tests = dict.fromkeys(k for run in runs for k, v in run["summary"].items()
                          if k.startswith("test_") and number(v) is not None)
    shown = [c for c in dict.fromkeys(["job", *keys, "status", metric_name, f"best_{val_col}", test_col,
                                       "epochs", "time_s"]) if c != f"best_{metric_name}"]
    extra = ["best_val_loss", "best_val_accuracy", *tests, "best_epoch", "overrides", "error", "dir"]
    columns = [*shown, *(c for c in extra if c not in shown and c != f"best_{metric_name}")]
    rows = []
    for run in runs:
        s = run["summary"]
        row = {"job": run["name"], **{k: run["overrides"].get(k, "") for k in keys}, "status": run["status"],
               "epochs": s.get("epochs_completed", len(run["rows"]) or None),
               "time_s": number(s.get("wall_time", run["wall_time"])), "best_epoch": s.get("best_epoch"),
               "error": run["error"].splitlines()[0] if run["error"] else "",
               "overrides": " ".join(f"{k}={v}" for k, v in run["overrides"].items()), "dir": run["dir"]}
        for col in columns:
            if col not in row:  # best_X: the best X over the epochs (unless the summary has best_X itself)
                row[col] = metric(run, col[5:] if col.startswith("best_") and col not in s else col)
        rows.append(row)
    return columns, shown, rows

def sort_rows(rows: list[dict], key: str, descending: bool, completed_first: bool) -> list[dict]:
    """Sorted by `key`; rows without it last, and (when sorting by a metric) unfinished jobs after completed ones."""
    def group(r):
        return (r.get(key) in (None, ""), completed_first and r["status"] != "completed")

    out = []
    for g in sorted({group(r) for r in rows}):
        part = [r for r in rows if group(r) == g]
        out += part if g[0] else sorted(part, key=lambda r: sort_value(r[key]), reverse=descending)
    return out

def write_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore")
    w.writeheader()
    w.writerows({c: "" if r.get(c) is None else r[c] for c in columns} for r in rows)
    path.write_text(buf.getvalue())

def folders(args: list) -> list[Path]:
    """The folders that the arguments name, globs expanded (also when the shell did not), files skipped."""
    found = []
    for arg in map(str, args):
        if os.path.exists(arg):
            matches = [arg]
        elif glob.has_magic(arg):
            matches = sorted(glob.glob(arg))
            if not matches:
                raise DlrunError(f"nothing matches {arg}")
        else:
            raise DlrunError(f"no such folder: {arg}")
        found += [Path(m) for m in matches if os.path.isdir(m)]
    if not found:
        raise DlrunError(f"not a folder: {args[0]}" if len(args) == 1
                         else f"no folder among {' '.join(map(str, args))}")
    return list(dict.fromkeys(found))

def table_rows(rows: list[dict], columns: list[str]) -> list[dict]:
    """The report rows as the table shows them: the time in seconds to a tenth, under 'time (s)'."""
    def cell(r, c):
        return f"{r[c]:.1f}" if c == "time_s" and r[c] is not None else r[c]

    return [{"time (s)" if c == "time_s" else c: cell(r, c) for c in columns} for r in rows]
