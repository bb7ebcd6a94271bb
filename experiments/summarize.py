"""Summarise a sweep folder: a markdown table of every job (sorted by test accuracy) and curves.png.

    python experiments/summarize.py SWEEP_DIR [--title T] > results.md
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402


def jobs(sweep: Path):
    for summary in sorted(sweep.glob("*/summary.json"), key=lambda p: int(p.parent.name)):
        run = summary.parent
        overrides = " ".join(OmegaConf.load(run / ".hydra" / "overrides.yaml"))
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        yield overrides, json.loads(summary.read_text()), rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("sweep", type=Path)
    ap.add_argument("--title", default="")
    args = ap.parse_args()
    results = sorted(jobs(args.sweep), key=lambda j: -(j[1].get("test_accuracy") or 0))
    print(f"# {args.title}\n")
    print("| job | status | best epoch | best val_loss | test_loss | test_accuracy | time (s) |")
    print("|---|---|---|---|---|---|---|")
    for overrides, s, _ in results:
        print(f"| `{overrides}` | {s['status']} | {s['best_epoch']} | {s['best_value']:.4f} | "
              f"{s.get('test_loss', float('nan')):.4f} | {s.get('test_accuracy', float('nan')):.4f} | {s['wall_time']:.1f} |")
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for overrides, _, rows in results:
        epochs = [r["epoch"] for r in rows]
        ax1.plot(epochs, [r["train_loss"] for r in rows], label=overrides)
        ax2.plot(epochs, [r["val_accuracy"] for r in rows], label=overrides)
    ax1.set(xlabel="epoch", ylabel="train loss", yscale="log", title="training loss")
    ax2.set(xlabel="epoch", ylabel="validation accuracy", title="validation accuracy")
    ax2.legend(fontsize=7)
    fig.suptitle(args.title)
    fig.tight_layout()
    fig.savefig(args.sweep.parent / "curves.png", dpi=100)


if __name__ == "__main__":
    main()
