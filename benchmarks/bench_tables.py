"""Peak memory and time of reading your own table: dlrun's `dataset=csv` held in memory, and streamed
(`dataset.in_memory=false`: read in chunks, encoded once into a memory-mapped file), beside the plain read a user
would write (pandas `read_csv` of the numbers straight into a float32 array). Each case runs in its own process;
peak RSS is the child's VmHWM. Run: .venv/bin/python benchmarks/bench_tables.py [--rows N]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASES = {
    "dlrun's imports alone (torch, pandas)": "import pandas, torch, dlrun.data.tabular",
    "plain": "import pandas as pd, numpy as np; f = pd.read_csv(P); "
             "x = pd.get_dummies(f.drop(columns=['y']), columns=['colour'], dtype=np.float32).to_numpy(np.float32); "
             "y = f['y'].to_numpy()",
    "dlrun in memory": "from dlrun.data.tabular import csv_table; d = csv_table(P, 'y')",
    "dlrun streamed": "from dlrun.data.tabular import csv_table; d = csv_table(P, 'y', in_memory=False); "
                      "import torch; s = sum(float(d.train.x[i:i + 65536].sum()) for i in range(0, len(d.train), 65536))",
}


def write_table(path: Path, rows: int, columns: int = 20) -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    with open(path, "w") as f:
        f.write(",".join([f"f{i}" for i in range(columns)] + ["colour", "y"]) + "\n")
        for start in range(0, rows, 100_000):
            n = min(100_000, rows - start)
            block = rng.normal(size=(n, columns)).round(4)
            colour = rng.choice(["red", "green", "blue"], n)
            y = (block[:, 0] > 0).astype(int)
            f.write("".join(",".join(map(str, r)) + f",{c},{t}\n" for r, c, t in zip(block.tolist(), colour, y)))


def measure(code: str, path: Path, data_dir: str) -> dict:
    # VmHWM, the process's own peak: ru_maxrss would carry the parent's high-water mark across fork and exec
    script = (f"import time; P = {str(path)!r}; t = time.perf_counter(); {code}; "
              "hwm = next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1]; "
              "print(time.perf_counter() - t, hwm)")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={**os.environ, "DLRUN_DATA": data_dir, "OMP_NUM_THREADS": "1"})
    if proc.returncode:
        raise SystemExit(proc.stderr)
    out = proc.stdout.split()
    return {"seconds": float(out[0]), "peak_mb": int(out[1]) / 1024}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "table.csv"
        write_table(path, args.rows)
        print(f"{args.rows:,} rows x 22 columns, {path.stat().st_size / 1e6:.0f} MB of CSV")
        results = {name: measure(code, path, str(Path(tmp) / "data")) for name, code in CASES.items()}
        results["dlrun streamed, file prepared"] = measure(CASES["dlrun streamed"], path, str(Path(tmp) / "data"))
    base = results["plain"]
    print(f"{'case':38} {'seconds':>8} {'peak MB':>8} {'time ratio':>10} {'memory ratio':>12}")
    for name, r in results.items():
        print(f"{name:38} {r['seconds']:8.1f} {r['peak_mb']:8.0f} {r['seconds'] / base['seconds']:10.2f} "
              f"{r['peak_mb'] / base['peak_mb']:12.2f}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
