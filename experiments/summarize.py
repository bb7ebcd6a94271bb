"""Summarise a sweep folder: a markdown table of its jobs and a plot of their learning curves.

    python experiments/summarize.py SWEEP_DIR [--title T] [--best-per KEY] [--grid ROW_KEY COL_KEY] > results.md

--best-per KEY  keep, for each value of override KEY, the job with the lowest best val_loss (lr tuning)
--grid R C      also print test accuracy as an R x C table (a 2-D sweep)
The plot (curves.png beside SWEEP_DIR) overlays train loss and validation accuracy of the jobs kept.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from dlrun.report import find_runs, load_run  # noqa: E402


def jobs(sweep: Path) -> list[dict]:
    """The sweep's jobs that wrote a summary, in job order: {overrides, summary, rows, ...} (dlrun.report)."""
    return [j for j in (load_run(f, sweep) for f in find_runs(sweep)) if j["summary"]]


def label(job: dict, keys: list[str]) -> str:
    return " ".join(f"{k}={job['overrides'][k]}" for k in keys if k in job["overrides"]) or "baseline"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("sweep", type=Path)
    ap.add_argument("--title", default="")
    ap.add_argument("--best-per")
    ap.add_argument("--grid", nargs=2)
    args = ap.parse_args()
    all_jobs = jobs(args.sweep)
    keys = dict.fromkeys(k for j in all_jobs for k in j["overrides"])
    varying = [k for k in keys if len({j["overrides"].get(k) for j in all_jobs}) > 1]
    kept = all_jobs
    if args.best_per:
        best: dict[str, dict] = {}
        for j in all_jobs:
            key = j["overrides"][args.best_per]
            if key not in best or j["summary"]["best_value"] < best[key]["summary"]["best_value"]:
                best[key] = j
        kept = list(best.values())
    kept.sort(key=lambda j: -(j["summary"].get("test_accuracy") or 0))
    print(f"# {args.title}\n\n{len(all_jobs)} jobs{f', best learning rate per {args.best_per} by validation loss' if args.best_per else ''}.\n")
    print("| job | status | epochs | best epoch | train loss | val loss (best) | val loss (last) | train acc | val acc | test acc | time (s) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for j in kept:
        s, last = j["summary"], j["rows"][-1]
        best_row = next((r for r in j["rows"] if r["epoch"] == s["best_epoch"]), last)
        print(f"| `{label(j, varying)}` | {s['status']} | {s['epochs_completed']} | {s['best_epoch']} | "
              f"{last['train_loss']:.4f} | {best_row['val_loss']:.4f} | {last['val_loss']:.4f} | {last.get('train_accuracy', float('nan')):.3f} | "
              f"{best_row.get('val_accuracy', float('nan')):.3f} | {s.get('test_accuracy', float('nan')):.3f} | {s['wall_time']:.1f} |")
    if args.grid:
        r, c = args.grid
        rows = sorted({j["overrides"][r] for j in all_jobs}, key=str)
        cols = sorted({j["overrides"][c] for j in all_jobs}, key=str)
        acc = {(j["overrides"][r], j["overrides"][c]): j["summary"].get("test_accuracy") for j in all_jobs}
        print(f"\n### Test accuracy: {r} (rows) x {c} (columns)\n")
        print(f"| {r} | " + " | ".join(cols) + " |")
        print("|---|" + "---|" * len(cols))
        for rv in rows:
            print(f"| {rv} | " + " | ".join(f"{acc[(rv, cv)]:.3f}" if acc.get((rv, cv)) is not None else "-"
                                            for cv in cols) + " |")
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for j in kept[:12]:
        epochs = [r["epoch"] for r in j["rows"]]
        ax1.plot(epochs, [r["train_loss"] for r in j["rows"]], label=label(j, varying))
        ax2.plot(epochs, [r.get("val_accuracy", float("nan")) for r in j["rows"]], label=label(j, varying))
    ax1.set(xlabel="epoch", ylabel="train loss", yscale="log", title="training loss")
    ax2.set(xlabel="epoch", ylabel="validation accuracy", title="validation accuracy")
    ax2.legend(fontsize=7)
    fig.suptitle(args.title)
    fig.tight_layout()
    fig.savefig(args.sweep.parent / "curves.png", dpi=100)


if __name__ == "__main__":
    main()
