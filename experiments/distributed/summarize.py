"""The table and figure of experiments/distributed/results.md from the runs of run.sh.
Usage: python experiments/distributed/summarize.py RUNS_DIR"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(runs: Path) -> None:
    table, curves = [], {}
    for run in sorted(p for p in runs.iterdir() if (p / "summary.json").exists()):
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        s = json.loads((run / "summary.json").read_text())
        seconds = sum(r["epoch_time"] for r in rows)
        curves[run.name] = [r["val_accuracy"] for r in rows]
        table.append(f"| {run.name} | {s.get('processes', 1)} | {s.get('strategy', '-')} | {s['test_accuracy']:.4f} | "
                     f"{rows[-1]['val_accuracy']:.4f} | {s['n_train'] * len(rows) / seconds:,.0f} | "
                     f"{seconds / len(rows):.2f} | {rows[-1].get('exchanged_mb', 0):.1f} | "
                     f"{rows[-1].get('staleness', float('nan')):.2f} |")
    print("| run | processes | strategy | test accuracy | last val accuracy | samples/s | s per epoch | "
          "MB exchanged per epoch (rank 0) | mean staleness |")
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(table))
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, acc in curves.items():
        ax.plot(range(1, len(acc) + 1), acc, marker="o", label=name)
    ax.set(xlabel="epoch", ylabel="validation accuracy", title="Fashion-MNIST, MLP: strategies against epochs")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(runs.parent / "accuracy.png", dpi=100)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
