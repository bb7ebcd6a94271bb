"""`dlrun report DIR`: one table, DIR/report.csv and plots for a run, a sweep or a folder of runs.

Reads what every run writes (summary.json, metrics.jsonl, .hydra/overrides.yaml) and, in a sweep
folder, ledger.jsonl for jobs that failed before writing a summary. Never imports torch.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import math
import statistics
from pathlib import Path

import yaml

from dlrun.errors import DlrunError, did_you_mean
from dlrun.plotter import pyplot
from dlrun.sweep import read_ledger

LOWER_IS_BETTER = ("loss", "mse", "mae", "error", "time")


def lower_is_better(name: str) -> bool:
    return any(word in name for word in LOWER_IS_BETTER)


def _number(v) -> float | None:
    """A finite float, or None (missing, non-finite, not a number)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


def _natural(path: Path):
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
    return sorted(found, key=lambda p: _natural(p.relative_to(root)))


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


def load_run(folder: Path, root: Path) -> dict:
    """{name, dir, overrides (key -> value), summary, rows, status, error} of one run folder."""
    summary = _read(folder / "summary.json", json.loads, None)
    overrides = _read(folder / ".hydra" / "overrides.yaml", yaml.safe_load, None) or []
    ledger = [e for e in read_ledger(folder.parent) if e.get("dir") == folder.name and e.get("status") != "skipped"]
    last = ledger[-1] if ledger else {}
    status = last.get("status") or (summary or {}).get("status") or "incomplete"
    name = str(folder.relative_to(root)) if folder != root else folder.name
    return {"name": name, "dir": str(folder), "summary": summary or {},
            "overrides": dict(o.lstrip("+").split("=", 1) if "=" in o else (o, "") for o in map(str, overrides)),
            "rows": _read(folder / "metrics.jsonl", _jsonl, []), "status": status,
            "error": last.get("error") or (summary or {}).get("error"), "wall_time": last.get("wall_time")}


def metric(run: dict, name: str) -> float | None:
    """`name` from the summary (test_accuracy, wall_time, ...), else its best value over the epochs
    (val_loss: the lowest, val_accuracy: the highest)."""
    if name in run["summary"]:
        return _number(run["summary"][name])
    values = [v for v in (_number(r.get(name)) for r in run["rows"]) if v is not None]
    if not values:
        return None
    return min(values) if lower_is_better(name) else max(values)


def varying_keys(runs: list[dict]) -> list[str]:
    """Override keys whose value is not the same in every run, in order of first appearance."""
    keys = dict.fromkeys(k for r in runs for k in r["overrides"])
    return [k for k in keys if len({r["overrides"].get(k) for r in runs}) > 1]


# ---- the table and the CSV ------------------------------------------------------------------------
def _sort_value(value):
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
                          if k.startswith("test_") and _number(v) is not None)
    shown = [c for c in dict.fromkeys(["job", *keys, "status", metric_name, f"best_{val_col}", test_col,
                                       "epochs", "time_s"]) if c != f"best_{metric_name}"]
    extra = ["best_val_loss", "best_val_accuracy", *tests, "best_epoch", "overrides", "error", "dir"]
    columns = [*shown, *(c for c in extra if c not in shown and c != f"best_{metric_name}")]
    rows = []
    for run in runs:
        s = run["summary"]
        row = {"job": run["name"], **{k: run["overrides"].get(k, "") for k in keys}, "status": run["status"],
               "epochs": s.get("epochs_completed", len(run["rows"]) or None),
               "time_s": _number(s.get("wall_time", run["wall_time"])), "best_epoch": s.get("best_epoch"),
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
        out += part if g[0] else sorted(part, key=lambda r: _sort_value(r[key]), reverse=descending)
    return out


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"
    return str(v)


def write_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore")
    w.writeheader()
    w.writerows({c: "" if r.get(c) is None else r[c] for c in columns} for r in rows)
    path.write_text(buf.getvalue())


# ---- plots ----------------------------------------------------------------------------------------
def _label(run: dict, keys: list[str]) -> str:
    return " ".join(f"{k}={run['overrides'].get(k, '-')}" for k in keys) or run["name"]


def plot_curves(path: Path, runs: list[dict], keys: list[str], title: str) -> None:
    """Every run's learning curves overlaid: losses (train dashed, validation solid), validation accuracy."""
    plt = pyplot()

    with_acc = any("val_accuracy" in r for run in runs for r in run["rows"])
    fig, axes = plt.subplots(1, 2 if with_acc else 1, figsize=(12 if with_acc else 7, 4.5), squeeze=False)
    ax_loss, ax_acc = axes[0][0], axes[0][1] if with_acc else None
    for i, run in enumerate(runs):
        epochs = [r.get("epoch") for r in run["rows"]]

        def series(name):
            return [v if v is not None else float("nan") for v in (_number(r.get(name)) for r in run["rows"])]

        colour = plt.get_cmap("tab10" if len(runs) <= 10 else "tab20")(i % 20)
        label = _label(run, keys) + ("" if run["status"] == "completed" else f" ({run['status']})")
        mark = {"marker": "o", "markersize": 3} if len(epochs) < 30 else {}
        ax_loss.plot(epochs, series("val_loss"), color=colour, label=label if i < 20 else None, **mark)
        ax_loss.plot(epochs, series("train_loss"), color=colour, linestyle="--", alpha=0.6, **mark)
        if ax_acc is not None:
            ax_acc.plot(epochs, series("val_accuracy"), color=colour, **mark)
    losses = [v for run in runs for r in run["rows"] for v in (_number(r.get("val_loss")), _number(r.get("train_loss")))
              if v is not None]
    if losses and min(losses) > 0 and max(losses) / min(losses) > 30:
        ax_loss.set_yscale("log")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss (validation solid, training dashed)")
    if ax_acc is not None:
        ax_acc.set(xlabel="epoch", ylabel="validation accuracy", title="validation accuracy")
    ax_loss.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def grid_axes(runs: list[dict], keys: list[str]) -> tuple[str, str | None] | None:
    """(x key, line key) when the swept keys, seeds aside, form a 1-D or 2-D grid; else None.
    The x axis gets the numeric key with more values."""
    dims = [k for k in keys if k != "seed"]
    if not 1 <= len(dims) <= 2:
        return None

    def numeric(k):
        return all(_sort_value(r["overrides"].get(k))[0] == 0 for r in runs)

    dims.sort(key=lambda k: (not numeric(k), -len({r["overrides"].get(k) for r in runs})))
    return dims[0], (dims[1] if len(dims) == 2 else None)


def plot_grid(path: Path, runs: list[dict], axes: tuple[str, str | None], metric_name: str, title: str) -> None:
    """The metric against the swept value (one line per value of a second key); the mean over seeds,
    with their spread as error bars. Jobs that did not complete are red crosses on the x axis."""
    plt = pyplot()

    x_key, line_key = axes
    xs = sorted({r["overrides"].get(x_key) for r in runs}, key=_sort_value)
    numeric = all(_sort_value(x)[0] == 0 for x in xs)
    pos = {x: float(x) if numeric else i for i, x in enumerate(xs)}
    fig, ax = plt.subplots(figsize=(7, 4.5))
    lines = sorted({r["overrides"].get(line_key) for r in runs}, key=_sort_value) if line_key else [None]
    for i, line in enumerate(lines):
        px, py, pe = [], [], []
        for x in xs:
            cell = [r for r in runs if r["overrides"].get(x_key) == x
                    and (line_key is None or r["overrides"].get(line_key) == line)]
            values = [v for v in (metric(r, metric_name) for r in cell if r["status"] == "completed") if v is not None]
            if len(values) < len(cell):
                ax.plot([pos[x]], [0.03 + 0.03 * i], "x", color="red", transform=ax.get_xaxis_transform())
            if values:
                px.append(pos[x])
                py.append(statistics.fmean(values))
                pe.append(statistics.pstdev(values) if len(values) > 1 else 0.0)
        ax.errorbar(px, py, yerr=pe if any(pe) else None, marker="o", capsize=3, color=f"C{i % 10}",
                    label=f"{line_key}={line}" if line_key else None)
    if numeric and all(p > 0 for p in pos.values()) and max(pos.values()) / min(pos.values()) >= 100:
        ax.set_xscale("log")
    if not numeric:
        ax.set_xticks(list(pos.values()), [str(x) for x in xs], rotation=30)
    failed = sum(r["status"] != "completed" for r in runs)
    ax.set(xlabel=x_key, ylabel=metric_name,
           title=f"{metric_name} against {x_key}" + (f" (x: {failed} job(s) not completed)" if failed else ""))
    if line_key:
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ---- the command ----------------------------------------------------------------------------------
def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="dlrun report", description="A table, DIR/report.csv, curves.png and (for a 1-D or 2-D sweep) "
        "grid.png for a run, a sweep or a folder of runs.")
    ap.add_argument("dir", type=Path, help="a run folder, a sweep folder (hydra.sweep.dir) or any folder of runs")
    ap.add_argument("--metric", help="the target metric (default: test_accuracy for classification, else "
                    "val_loss); a val_*/train_* metric is its best value over the epochs")
    ap.add_argument("--sort", metavar="KEY[:asc|:desc]", help="a column to sort by (default: the metric; "
                    "losses and times ascending, other metrics descending)")
    ap.add_argument("--top", type=int, metavar="N", help="show and plot the N first rows only (report.csv keeps all)")
    return ap.parse_args(argv)


def report(root: Path, metric_name: str | None = None, sort: str | None = None, top: int | None = None,
           console=None) -> dict:
    """Build the report of ROOT; returns {columns, rows (sorted), files}. Raises DlrunError on bad input."""
    from rich.console import Console
    from rich.table import Table

    root = Path(root)
    if not root.is_dir():
        raise DlrunError(f"no such folder: {root}")
    runs = [load_run(f, root) for f in find_runs(root)]
    if not runs:
        raise DlrunError(f"{root} holds no dlrun run (a folder with summary.json or .hydra/overrides.yaml)")
    if top is not None and top < 1:
        raise DlrunError(f"--top {top}: give a positive number of rows")
    classification, explicit = any("test_accuracy" in r["summary"] for r in runs), metric_name is not None
    metric_name = metric_name or ("test_accuracy" if classification else "val_loss")
    known = sorted({k for r in runs for k, v in r["summary"].items() if _number(v) is not None}
                   | {k for r in runs for row in r["rows"] for k in row})
    if metric_name not in known and (known or explicit):
        raise DlrunError(f"no run has the metric '{metric_name}'.{did_you_mean(metric_name, known)} "
                         f"Available: {', '.join(known)}")
    keys = varying_keys(runs)
    columns, shown_cols, rows = build_rows(runs, metric_name, keys)
    sort_key, _, direction = (sort or metric_name).partition(":")
    if sort_key not in columns:
        raise DlrunError(f"cannot sort by '{sort_key}'.{did_you_mean(sort_key, columns)} Columns: {', '.join(columns)}")
    if direction not in ("", "asc", "desc"):
        raise DlrunError(f"--sort {sort}: the direction is asc or desc")
    numeric_metric = sort_key not in ("job", "status", "overrides", "error", "dir", *keys)
    descending = direction == "desc" or (not direction and numeric_metric and not lower_is_better(sort_key))
    rows = sort_rows(rows, sort_key, descending, completed_first=numeric_metric)
    shown = rows[:top] if top else rows

    files = {"csv": root / "report.csv", "curves": root / "curves.png"}
    write_csv(files["csv"], columns, rows)
    by_name = {r["name"]: r for r in runs}
    title = f"{root}: {len(runs)} run(s)"
    plot_curves(files["curves"], [by_name[r["job"]] for r in shown], keys, title)
    axes = grid_axes(runs, keys) if len(runs) > 1 else None
    if axes:
        files["grid"] = root / "grid.png"
        plot_grid(files["grid"], runs, axes, metric_name, title)

    table = Table(title=f"{root}: {len(runs)} run(s), sorted by {sort_key} ({'desc' if descending else 'asc'})"
                  + (f", top {top}" if top and top < len(rows) else ""))
    colour = {"completed": "green", "failed": "red", "interrupted": "yellow"}
    for c in shown_cols:
        table.add_column(c.replace("time_s", "time (s)"), justify="left" if c in ("job", "status", *keys) else "right")
    for r in shown:
        table.add_row(*[f"[{colour.get(r['status'], 'dim')}]{r['status']}" if c == "status"
                        else f"{r[c]:.1f}" if c == "time_s" and r.get(c) is not None else _fmt(r.get(c))
                        for c in shown_cols])
    console = console or Console()
    console.print(table)
    for r in shown:
        if r["error"]:
            console.print(f"[red]{r['job']}[/red]: {r['error']}", highlight=False)
    console.print("wrote " + ", ".join(str(p) for p in files.values()), highlight=False)
    return {"columns": columns, "rows": rows, "files": files}


def report_command(argv: list[str]) -> int:
    """`dlrun report DIR [--metric M] [--sort KEY[:asc|:desc]] [--top N]`; returns the exit code."""
    from dlrun.cli import report_error

    args = parse_args(argv)
    try:
        report(args.dir, args.metric, args.sort, args.top)
    except DlrunError as exc:
        return report_error(exc)
    return 0

