"""`dlrun report DIR...`: one table, report.csv and plots for a run, a sweep or folders of runs.

Reads what every run writes (summary.json, metrics.jsonl, .hydra/overrides.yaml) and, in a sweep
folder, ledger.jsonl for jobs that failed before writing a summary. Never imports torch.
Also the table of runs that `dlrun -m` prints at its end (`print_runs`).
"""
from __future__ import annotations

import argparse
import csv
import glob
import io
import json
import math
import os
import statistics
from pathlib import Path

import yaml

from dlrun.errors import DlrunError, did_you_mean, print_warning
from dlrun.plotter import pyplot, save, text_width, wrap
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


def write_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore")
    w.writeheader()
    w.writerows({c: "" if r.get(c) is None else r[c] for c in columns} for r in rows)
    path.write_text(buf.getvalue())


# ---- tables of runs (also the table at the end of `dlrun -m`) ----------------------------------------
MAX_KEY_COLUMNS = 4  # more overrides that differ between runs share one wrapped "overrides" column
STATUS_COLOUR = {"completed": "green", "skipped": "green", "failed": "red", "interrupted": "yellow"}


def _float(v) -> float | None:
    """A float, or the float that text such as '0.0031' stands for; None for integers and anything else."""
    if isinstance(v, float):
        return v
    if not isinstance(v, str):
        return None
    try:
        int(v)
        return None  # '128', '0': shown as written
    except ValueError:
        pass
    try:
        return float(v)
    except ValueError:
        return None


def _rounded(values: list, number, form: str) -> list[str]:
    """`values` as text, the numbers among them (`number(v)` not None) to 4 significant digits, or more
    where fewer would make different values look the same; None as blank."""
    def identity(v):
        f = number(v)
        return ("text", "" if v is None else str(v)) if f is None or math.isnan(f) else f

    distinct = len(set(map(identity, values)))
    for digits in range(4, 17):
        texts = ["" if v is None else str(v) if number(v) is None else format(number(v), f"{form}.{digits}g")
                 for v in values]
        if len(set(texts)) >= distinct:
            break
    return texts


def shown(values: list) -> list[str]:
    """A column's values as a table shows them: floats to 4 significant digits, trailing zeros kept so that
    decimals line up (0.5990); ints and text as they are."""
    return _rounded(values, lambda v: v if isinstance(v, float) else None, "#")


def shown_setting(values: list) -> list[str]:
    """Override values as a table shows them: numbers to 4 significant digits (0.004430375 -> 0.00443)."""
    return _rounded(values, _float, "")


def runs_table(rows: list[dict], overrides: list[dict], keep=("job",), fold: bool = False):
    """A rich table of runs and its caption. `rows`: one {column: value} per run, identity first ("job",
    "folder"); `overrides`: each run's {key: value}. The overrides that tell runs apart come after the
    identity, one column per key, or one wrapped "overrides" column with `fold` or when more than
    MAX_KEY_COLUMNS keys differ. Numbers are rounded (`shown`). What every row shares (overrides, and
    columns other than `keep` that hold one value) leaves the table for the caption: "same in every
    row: k=v, ...". """
    from rich.table import Table
    from rich.text import Text

    several = len(rows) > 1
    keys = list(dict.fromkeys(k for o in overrides for k in o))
    common = [k for k in keys if several and all(k in o for o in overrides) and len({o[k] for o in overrides}) == 1]
    varying = [k for k in keys if k not in common]
    same = [f"{k}={shown_setting([overrides[0][k]])[0]}" for k in common]
    columns = list(dict.fromkeys(c for r in rows for c in r))
    texts = {c: shown([r.get(c) for r in rows]) for c in columns}
    for c in list(columns):
        if several and c not in keep and len(set(texts[c])) == 1:
            columns.remove(c)
            same += [f"{c}={texts[c][0]}"] if texts[c][0] else []
    lead = [c for c in columns if c in ("job", "folder")]
    rest = [c for c in columns if c not in lead]
    key_cells = {k: shown_setting([o.get(k) for o in overrides]) for k in varying}
    folded = len(varying) > 1 and (fold or len(varying) > MAX_KEY_COLUMNS)
    if folded:
        key_cells = {"overrides": [" ".join(f"{k}={key_cells[k][i]}" for k in varying if k in o)
                                   for i, o in enumerate(overrides)]}

    table = Table()
    for c in lead:
        table.add_column(c, justify="left" if c == "job" else "right")
    for k in key_cells:
        table.add_column(k, max_width=48 if folded else None, overflow="fold")
    for c in rest:
        numeric = all(t == "" or _float(t) is not None or t.lstrip("-").isdigit() for t in texts[c])
        table.add_column(c, justify="right" if numeric else "left")
    cells = {**texts, **key_cells}
    for i in range(len(rows)):
        table.add_row(*(Text(cells[c][i], style=STATUS_COLOUR.get(cells[c][i], "dim") if c == "status" else "")
                        for c in [*lead, *key_cells, *rest]))
    return table, ("same in every row: " + ", ".join(same) if same else "")


def _width(console, table) -> int:
    """The columns `table` takes when nothing in it is folded."""
    from rich.measure import Measurement

    return Measurement.get(console, console.options.update_width(10_000), table).maximum


def print_table(table, console=None) -> None:
    """Print `table`; where stdout is not a terminal (a pipe, a CI log) at the table's own width, not rich's
    default of 80 columns, so nothing is cut or folded."""
    from rich.console import Console

    console = console or Console()
    width = console.width
    if not console.is_terminal:
        console.width = _width(console, table)
    try:
        console.print(table)
    finally:
        console.width = width


def print_runs(title: str, rows: list[dict], overrides: list[dict], keep=("job",), console=None) -> None:
    """The title line, `runs_table` and its caption line; on a terminal too narrow for one column per
    override key, the keys share one column. The title and caption are never folded (the terminal may)."""
    from rich.console import Console

    console = console or Console()
    table, caption = runs_table(rows, overrides, keep)
    if console.is_terminal and _width(console, table) > console.width:
        table, caption = runs_table(rows, overrides, keep, fold=True)
    console.print(title, style="bold", soft_wrap=True, highlight=False, markup=False)
    print_table(table, console)
    if caption:
        console.print(caption, soft_wrap=True, highlight=False, markup=False)


# ---- plots ----------------------------------------------------------------------------------------
MAX_LEGEND = 20  # runs named in a legend (the first in the table's order)


def run_labels(runs: list[dict], keys: list[str]) -> list[str]:
    """What tells each run apart: its values of the `keys` that differ between runs (those it sets), else
    its folder's name; the name is added where two runs would read the same."""
    values = {k: shown_setting([run["overrides"].get(k) for run in runs]) for k in keys}
    labels = [" ".join(f"{k}={values[k][i]}" for k in keys if k in run["overrides"]) or run["name"]
              for i, run in enumerate(runs)]
    return [f"{label} ({run['name']})" if labels.count(label) > 1 and label != run["name"] else label
            for label, run in zip(labels, runs)]


def _legend_size(labels: list[str], title: str = "") -> tuple[float, float]:
    """About the (width, height) in inches of a legend of `labels` at 8 points, one column."""
    lines = sum(label.count("\n") + 1 for label in labels) + (1 if title else 0)
    return max(text_width(t, 8) for t in [*labels, title]) + 0.6, lines * 8 * 1.6 / 72 + 0.4


def curves_figure(runs: list[dict], labels: list[str], title: str):
    """Every run's learning curves overlaid: losses (train dashed, validation solid), validation accuracy.
    The legend stands right of the plots and names the first MAX_LEGEND runs."""
    plt = pyplot()

    with_acc = any("val_accuracy" in r for run in runs for r in run["rows"])
    named = [wrap(label + ("" if run["status"] == "completed" else f" ({run['status']})"), 3.2, 8)
             for label, run in zip(labels[:MAX_LEGEND], runs)]
    legend_title = f"first {MAX_LEGEND} of {len(runs)} runs" if len(runs) > MAX_LEGEND else ""
    legend_w, legend_h = _legend_size(named, legend_title)
    width = (11.0 if with_acc else 6.0) + legend_w
    title = wrap(title, width - 0.4, 12)
    fig, axes = plt.subplots(1, 2 if with_acc else 1, squeeze=False, layout="constrained",
                             figsize=(width, max(4.5, legend_h + 0.25 * title.count("\n") + 0.6)))
    ax_loss, ax_acc = axes[0][0], axes[0][1] if with_acc else None
    handles = []
    for i, run in enumerate(runs):
        epochs = [r.get("epoch") for r in run["rows"]]

        def series(name):
            return [v if v is not None else float("nan") for v in (_number(r.get(name)) for r in run["rows"])]

        # ten colours; the marker tells runs i and i + 10 apart
        style = {"color": f"C{i % 10}", "marker": "os^Dv"[i // 10 % 5], "markersize": 4, "linewidth": 1.2,
                 "markevery": max(1, len(epochs) // 10)}
        handles += ax_loss.plot(epochs, series("val_loss"), **style)
        ax_loss.plot(epochs, series("train_loss"), linestyle="--", alpha=0.5, **style)
        if ax_acc is not None:
            ax_acc.plot(epochs, series("val_accuracy"), **style)
    losses = [v for run in runs for r in run["rows"] for v in (_number(r.get("val_loss")), _number(r.get("train_loss")))
              if v is not None]
    if losses and min(losses) > 0 and max(losses) / min(losses) > 30:
        ax_loss.set_yscale("log")
    for ax in axes[0]:
        ax.xaxis.get_major_locator().set_params(integer=True)  # epochs: no 2.25
    ax_loss.set(xlabel="epoch", ylabel="loss")
    ax_loss.set_title("loss (validation solid, training dashed)", fontsize=10)
    if ax_acc is not None:
        ax_acc.set(xlabel="epoch", ylabel="validation accuracy")
        ax_acc.set_title("validation accuracy", fontsize=10)
    fig.legend(handles[:MAX_LEGEND], named, loc="outside right upper", fontsize=8, title=legend_title or None,
               title_fontsize=8)
    fig.suptitle(title, fontsize=12)
    return fig


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


def grid_figure(runs: list[dict], axes: tuple[str, str | None], metric_name: str, title: str):
    """The metric against the swept value (one line per value of a second key, named right of the plot);
    the mean over seeds, with their spread as error bars. Jobs that did not complete are red crosses on
    the x axis."""
    plt = pyplot()

    x_key, line_key = axes
    xs = sorted({r["overrides"].get(x_key) for r in runs}, key=_sort_value)
    numeric = all(_sort_value(x)[0] == 0 for x in xs)
    pos = {x: float(x) if numeric else i for i, x in enumerate(xs)}
    lines = sorted({r["overrides"].get(line_key) for r in runs}, key=_sort_value) if line_key else [None]
    names = [wrap(f"{line_key}={v}", 3.2, 8) for v in shown_setting(lines)] if line_key else []
    width = 7.0 + (_legend_size(names)[0] if names else 0)
    title = wrap(title, width - 0.4, 12)
    fig, ax = plt.subplots(figsize=(width, 4.5 + 0.25 * title.count("\n")), layout="constrained")
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
                    label=names[i] if line_key else None)
    if numeric and all(p > 0 for p in pos.values()) and max(pos.values()) / min(pos.values()) >= 100:
        ax.set_xscale("log")
    if not numeric:
        ax.set_xticks(list(pos.values()), [wrap(x, 1.5, 9) for x in shown_setting(xs)], rotation=30, fontsize=9)
    failed = sum(r["status"] != "completed" for r in runs)
    ax.set(xlabel=x_key, ylabel=metric_name)
    ax.set_title(wrap(f"{metric_name} against {x_key}" + (f" (x: {failed} job(s) not completed)" if failed else ""),
                      width - 1.5, 10), fontsize=10)
    if line_key:
        fig.legend(loc="outside right upper", fontsize=8)
    fig.suptitle(title, fontsize=12)
    return fig


# ---- the command ----------------------------------------------------------------------------------
def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="dlrun report", description="A table, report.csv, curves.png and (for a 1-D or 2-D sweep) "
        "grid.png for runs, sweeps or folders of runs. The files go into DIR; with several folders, into "
        "their common parent folder (or --out).")
    ap.add_argument("dirs", nargs="+", metavar="DIR", help="a run folder, a sweep folder (hydra.sweep.dir) or "
                    "any folder of runs; several, or globs such as 'outputs/*/*', are reported together")
    ap.add_argument("--metric", help="the target metric (default: test_accuracy for classification, else "
                    "val_loss); a val_*/train_* metric is its best value over the epochs")
    ap.add_argument("--sort", metavar="KEY[:asc|:desc]", help="a column to sort by (default: the metric; "
                    "losses and times ascending, other metrics descending)")
    ap.add_argument("--top", type=int, metavar="N", help="show and plot the N first rows only (report.csv keeps all)")
    ap.add_argument("--out", type=Path, metavar="DIR", help="where report.csv and the PNGs go (default: DIR, or "
                    "the common parent of several folders)")
    return ap.parse_args(argv)


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


def _table_rows(rows: list[dict], columns: list[str]) -> list[dict]:
    """The report rows as the table shows them: the time in seconds to a tenth, under 'time (s)'."""
    def cell(r, c):
        return f"{r[c]:.1f}" if c == "time_s" and r[c] is not None else r[c]

    return [{"time (s)" if c == "time_s" else c: cell(r, c) for c in columns} for r in rows]


def report(dirs, metric_name: str | None = None, sort: str | None = None, top: int | None = None,
           console=None, out: Path | None = None) -> dict:
    """Build the report of the runs in `dirs` (a folder or a list of folders and globs); returns
    {columns, rows (sorted), files}. The files go into `out`, by default the folder, or the common parent of
    several. Raises DlrunError on bad input."""
    given = folders(dirs if isinstance(dirs, (list, tuple)) else [dirs])
    if len(given) > 1:
        given = [Path(os.path.abspath(f)) for f in given]
    root = given[0] if len(given) == 1 else Path(os.path.commonpath(given))
    found = {}  # a run found twice (a folder and its parent both given) is reported once
    for folder in given:
        for run in find_runs(folder):
            found.setdefault(run.resolve(), run)
    runs = []
    for folder in found.values():
        try:
            runs.append(load_run(folder, root))
        except Malformed as exc:
            print_warning(f"skipping {folder}: {exc}")
    runs.sort(key=lambda r: _natural(Path(r["name"])))
    if not runs:
        where = given[0] if len(given) == 1 else f"{len(given)} folders"
        raise DlrunError(f"{where} holds no dlrun run (a folder with summary.json or .hydra/overrides.yaml)")
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
    shown_rows = rows[:top] if top else rows

    out = Path(out) if out is not None else root
    files = {"csv": out / "report.csv", "curves": out / "curves.png"}
    by_name = {r["name"]: r for r in runs}
    title = f"{root}: {len(runs)} run(s)"
    plotted = [by_name[r["job"]] for r in shown_rows]
    axes = grid_axes(runs, keys) if len(runs) > 1 else None
    try:
        out.mkdir(parents=True, exist_ok=True)
        write_csv(files["csv"], columns, rows)
        save(curves_figure(plotted, run_labels(plotted, keys), title), files["curves"])
        if axes:
            files["grid"] = out / "grid.png"
            save(grid_figure(runs, axes, metric_name, title), files["grid"])
    except OSError as exc:
        raise DlrunError(f"cannot write the report into {out} ({exc.strerror or exc}); "
                         "choose a folder with --out DIR") from None

    from rich.console import Console
    from rich.text import Text

    console = console or Console()
    print_runs(f"{root}: {len(runs)} run(s), sorted by {sort_key} ({'desc' if descending else 'asc'})"
               + (f", top {top}" if top and top < len(rows) else ""),
               _table_rows(shown_rows, [c for c in shown_cols if c not in keys]),
               [by_name[r["job"]]["overrides"] for r in shown_rows], keep=("job", metric_name), console=console)
    for r in shown_rows:
        if r["error"]:
            console.print(Text(f"{r['job']}", style="red") + Text(f": {r['error']}"), highlight=False)
    console.print("wrote " + ", ".join(str(p) for p in files.values()), highlight=False)
    return {"columns": columns, "rows": rows, "files": files}


def report_command(argv: list[str]) -> int:
    """`dlrun report DIR... [--metric M] [--sort KEY[:asc|:desc]] [--top N] [--out DIR]`; returns the exit code."""
    from dlrun.errors import report_error

    args = parse_args(argv)
    try:
        report(args.dirs, args.metric, args.sort, args.top, out=args.out)
    except DlrunError as exc:
        return report_error(exc)
    return 0
