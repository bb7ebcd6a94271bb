"""`dlrun report DIR... [--metric M] [--sort KEY[:asc|:desc]] [--top N] [--out DIR]`."""
from __future__ import annotations

import argparse
from pathlib import Path

from dlrun.errors import DlrunError, report_error

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

def report_command(argv: list[str]) -> int:
    """`dlrun report DIR... [--metric M] [--sort KEY[:asc|:desc]] [--top N] [--out DIR]`; returns the exit code."""
    from dlrun.report.make import report

    args = parse_args(argv)
    try:
        report(args.dirs, args.metric, args.sort, args.top, out=args.out)
    except DlrunError as exc:
        return report_error(exc)
    return 0
