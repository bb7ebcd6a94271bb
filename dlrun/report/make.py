"""`report(dirs)`: one table, report.csv and plots for runs, sweeps or folders of runs."""
from __future__ import annotations

import os
from pathlib import Path

from dlrun.errors import DlrunError, did_you_mean, print_warning
from dlrun.metric_names import lower_is_better
from dlrun.plotter import save
from dlrun.report.plots import curves_figure, grid_axes, grid_figure, run_labels
from dlrun.report.runs import (Malformed, build_rows, find_runs, folders, load_run, natural, number, sort_rows,
                               table_rows, varying_keys, write_csv)
from dlrun.report.tables import print_runs

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
    runs.sort(key=lambda r: natural(Path(r["name"])))
    if not runs:
        where = given[0] if len(given) == 1 else f"{len(given)} folders"
        raise DlrunError(f"{where} holds no dlrun run (a folder with summary.json or .hydra/overrides.yaml)")
    if top is not None and top < 1:
        raise DlrunError(f"--top {top}: give a positive number of rows")
    classification, explicit = any("test_accuracy" in r["summary"] for r in runs), metric_name is not None
    headlines = {r["summary"].get("headline") for r in runs}  # the tasks' own test metric, when they agree
    headline = headlines.pop() if len(headlines) == 1 else None
    metric_name = metric_name or headline or ("test_accuracy" if classification else "val_loss")
    known = sorted({k for r in runs for k, v in r["summary"].items() if number(v) is not None}
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
               table_rows(shown_rows, [c for c in shown_cols if c not in keys]),
               [by_name[r["job"]]["overrides"] for r in shown_rows], keep=("job", metric_name), console=console)
    for r in shown_rows:
        if r["error"]:
            console.print(Text(f"{r['job']}", style="red") + Text(f": {r['error']}"), highlight=False)
    console.print("wrote " + ", ".join(str(p) for p in files.values()), highlight=False)
    return {"columns": columns, "rows": rows, "files": files}
