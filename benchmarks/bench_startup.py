"""Start-up: how long the commands that should not need torch take, and the default run end to end.

Each command runs as a fresh process, `--reps` times, the commands taking turns (so drift hits all alike).
Printed per command: wall seconds min / median / max, and whether the process imported torch (read from
`python -X importtime`, on one extra run). Two floors are timed the same way: a bare `python -c pass`, and
`import torch, torch._dynamo`, which any run that builds a `torch.optim` optimizer pays (Optimizer.__init__
imports torch._dynamo).

    .venv/bin/python benchmarks/bench_startup.py --reps 5 --out /tmp/startup.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
DLRUN = str(BIN / "dlrun") if (BIN / "dlrun").exists() else shutil.which("dlrun")
PY = sys.executable


def commands(tmp: Path) -> dict[str, tuple[list[str], dict]]:
    """name: (argv, extra env). `{run}` in an argument becomes a fresh folder per repetition."""
    completion = {"COMP_LINE": "dlrun optim", "COMP_POINT": "11"}
    return {
        "python -c pass": ([PY, "-c", "pass"], {}),
        "import torch, torch._dynamo": ([PY, "-c", "import torch, torch._dynamo"], {}),
        "dlrun --help": ([DLRUN, "--help"], {}),
        "dlrun list models": ([DLRUN, "list", "models"], {}),
        "dlrun --cfg job": ([DLRUN, "--cfg", "job"], {}),
        "completion (bash)": ([DLRUN, "-sc", "query=bash"], completion),
        "dlrun (default run)": ([DLRUN, "logger=quiet", "hydra.run.dir={run}"], {}),
    }


def run_once(argv: list[str], env: dict, tmp: Path, importtime: bool = False) -> tuple[float, str]:
    run_dir = Path(tempfile.mkdtemp(dir=tmp)) / "run"
    argv = [a.replace("{run}", str(run_dir)) for a in argv]
    if importtime:
        argv = [PY, "-X", "importtime", *(argv[1:] if argv[0] == PY else argv)]
    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, **env})
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    return wall, proc.stderr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS for every command (default 1)")
    ap.add_argument("--out", default=None, help="also write the results as JSON here")
    args = ap.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    os.environ.setdefault("CI", "1")
    tmp = Path(tempfile.mkdtemp(prefix="bench_startup_"))
    try:
        cmds = commands(tmp)
        torch_used = {}
        for name, (argv, env) in cmds.items():  # also a warm-up: page cache, .pyc files
            stderr = run_once(argv, env, tmp, importtime=True)[1]
            torch_used[name] = any(line.startswith("import time:") and line.split("|")[-1].strip() == "torch"
                                   for line in stderr.splitlines())
        load_before = os.getloadavg()
        times: dict[str, list[float]] = {name: [] for name in cmds}
        for rep in range(args.reps):
            order = list(cmds) if rep % 2 == 0 else list(cmds)[::-1]
            for name in order:
                times[name].append(run_once(*cmds[name], tmp)[0])
            print(f"  rep {rep + 1}/{args.reps}: " + ", ".join(f"{n} {times[n][-1]:.2f}s" for n in cmds), flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"\n{'command':30} {'min':>6} {'median':>7} {'max':>6}  imports torch")
    results = []
    for name, t in times.items():
        results.append({"command": name, "wall_s": t, "min": min(t), "median": statistics.median(t), "max": max(t),
                        "imports_torch": torch_used[name]})
        print(f"{name:30} {min(t):>6.2f} {statistics.median(t):>7.2f} {max(t):>6.2f}  {torch_used[name]}")
    if args.out:
        machine = {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
                   "threads": args.threads, "loadavg_before": load_before, "loadavg_after": os.getloadavg()}
        Path(args.out).write_text(json.dumps({"machine": machine, "reps": args.reps, "results": results}, indent=2))


if __name__ == "__main__":
    main()
