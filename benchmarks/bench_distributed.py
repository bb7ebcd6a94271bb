"""Samples per second of one training in 1 and 2 processes, per strategy, side by side in one run.

Each case is a real `dlrun` run (the launcher, gloo on the CPU); the figure is training samples over the summed
`epoch_time` of its epochs after the first (start-up, process launch and the first epoch's warm-up left out).
Every case keeps the global batch (batch per process x processes) the same, so each takes the same number of
optimizer steps; the ratio to one process is the speed-up. One torch thread per process: on a 2-core machine,
2 processes use both cores, 1 process one.
Run: .venv/bin/python benchmarks/bench_distributed.py [--dataset fashion_mnist] [--epochs 4] [--repeats 2]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

DLRUN = Path(sys.executable).with_name("dlrun")
CASES = {  # name -> (processes, extra overrides)
    "1 process": (1, []),
    "2 processes, ddp": (2, ["trainer.strategy=ddp"]),
    "2 processes, local_sgd every 8": (2, ["trainer.strategy=local_sgd", "trainer.average_every=8"]),
    "2 processes, local_sgd every 64": (2, ["trainer.strategy=local_sgd", "trainer.average_every=64"]),
}


def run(name: str, processes: int, extra: list[str], args, folder: Path) -> dict:
    batch = args.batch // processes
    out = folder / name.replace(" ", "_").replace(",", "")
    cmd = [str(DLRUN), f"dataset={args.dataset}", f"model={args.model}", f"trainer.epochs={args.epochs}",
           f"trainer.batch_size={batch}", f"trainer.devices={processes}", "logger=quiet", "trainer.summary=false",
           "optimizer=sgd", "optimizer.lr=0.05", *extra, f"hydra.run.dir={out}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if proc.returncode:
        raise SystemExit(proc.stderr[-2000:])
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    summary = json.loads((out / "summary.json").read_text())
    seconds = sum(r["epoch_time"] for r in rows[1:])
    return {"samples_per_s": summary["n_train"] * (len(rows) - 1) / seconds,
            "exchanged_mb": rows[-1].get("exchanged_mb", 0.0), "test_accuracy": summary["test_accuracy"],
            "steps": rows[-1]["step"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default="fashion_mnist")
    parser.add_argument("--model", default="mlp")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch", type=int, default=128, help="global batch: per process x processes")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    best: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):  # interleaved, so a slow moment of the machine hits every case
            for name, (processes, extra) in CASES.items():
                res = run(name, processes, extra, args, Path(tmp) / str(r))
                if name not in best or res["samples_per_s"] > best[name]["samples_per_s"]:
                    best[name] = res
    base = best["1 process"]["samples_per_s"]
    print(f"{args.dataset}, model={args.model}, global batch {args.batch}, {args.epochs} epochs, best of {args.repeats}")
    print(f"| case | samples/s | ratio to 1 process | MB exchanged per epoch and rank | test accuracy |")
    print("|---|---|---|---|---|")
    for name, res in best.items():
        print(f"| {name} | {res['samples_per_s']:,.0f} | {res['samples_per_s'] / base:.2f} | "
              f"{res['exchanged_mb']:.1f} | {res['test_accuracy']:.4f} |")


if __name__ == "__main__":
    main()
