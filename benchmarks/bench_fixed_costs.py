"""dlrun's fixed costs against the hand-written loop (plain_loop.py), side by side as whole processes:
the time from the process's start to its first optimizer step, and its peak resident memory.

Both sides run the same case (data, model, Adam) in a fresh Python, taking turns, the order flipped each
repetition, after one uncounted warm-up run of each (bytecode compiled and cached, as on a user's machine after
the first run: PYTHONDONTWRITEBYTECODE is dropped from the children's environment). A tiny wrapper registers
torch's global optimizer pre-step hook (measuring only) when the program imports torch.optim, to note the seconds
since the process started at the first step; peak RSS is the child's `ru_maxrss`. Ratio = dlrun / plain.

    .venv/bin/python benchmarks/bench_fixed_costs.py --case digits --reps 5
    .venv/bin/python benchmarks/bench_fixed_costs.py --case fashion --reps 3 --out /tmp/fixed.json
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CASES = {  # name: (dlrun overrides, plain_loop.py arguments)
    "digits": (["dataset=digits", "model.hidden=[256,128]", "trainer.epochs=2"],
               ["--dataset", "digits", "--model", "mlp", "--epochs", "2"]),
    "fashion": (["dataset=fashion_mnist", f"dataset.root={Path('~/.cache/dlrun/data').expanduser()}", "model.hidden=[256,128]",
                 "trainer.epochs=1"], ["--dataset", "fashion_mnist", "--model", "mlp", "--epochs", "1"]),
}


def first_step_wrapper(mark: Path) -> str:
    """Python source that runs the real program (argv[1:]) and writes, at the first optimizer step, the seconds
    since this process started (from /proc/self/stat) to `mark`. The hook is registered when the program itself
    imports torch.optim (a finder wraps that module's loading), so each side loads torch when and as it does on its
    own: dlrun composes its config and pauses the garbage collector before torch loads, the plain script does not."""
    return (
        "import os, sys, time, runpy, importlib.machinery\n"
        "ticks = os.sysconf('SC_CLK_TCK')\n"
        "fields = open('/proc/self/stat').read().rsplit(')', 1)[1].split()\n"
        "boot = float(open('/proc/uptime').read().split()[0])\n"
        "started = time.monotonic() - (boot - int(fields[19]) / ticks)\n"  # starttime: field 22 of stat
        "done = []\n"
        "def hook(opt, args, kwargs):\n"
        "    if not done:\n"
        "        done.append(1)\n"
        f"        open({str(mark)!r}, 'w').write(str(time.monotonic() - started))\n"
        "class OnOptimizerImport:\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name != 'torch.optim.optimizer':\n"
        "            return None\n"
        "        sys.meta_path.remove(self)\n"
        "        spec = importlib.machinery.PathFinder.find_spec(name, path)\n"
        "        run = spec.loader.exec_module\n"
        "        def exec_module(module):\n"
        "            run(module)\n"
        "            module.register_optimizer_step_pre_hook(hook)\n"  # torch's own global hook: measuring only
        "        spec.loader.exec_module = exec_module\n"
        "        return spec\n"
        "sys.meta_path.insert(0, OnOptimizerImport())\n"
        "sys.argv = sys.argv[1:]\n"
        "if sys.argv[0] == 'dlrun':\n"
        "    try:\n"
        "        from dlrun.cli.main import entry\n"
        "    except ImportError:  # dlrun before its cli/ package (an earlier commit, for before/after)\n"
        "        from dlrun.cli import entry\n"
        "    entry()\n"
        "else:\n"
        "    runpy.run_path(sys.argv[0], run_name='__main__')\n")


def measure(cmd: list[str]) -> tuple[float, float]:
    """(seconds to the first optimizer step, peak RSS in MB) of one process, this process's only child."""
    with tempfile.TemporaryDirectory() as tmp:
        mark = Path(tmp) / "first_step"
        env = {**os.environ, "CI": "1", "OMP_NUM_THREADS": "1"}
        # A user's Python keeps compiled bytecode (__pycache__); with PYTHONDONTWRITEBYTECODE set (as in some
        # sandboxes) every module is compiled from source on every run: 0.27 s of dlrun's 100 modules here.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        proc = subprocess.run([sys.executable, "-c", first_step_wrapper(mark), *cmd], cwd=tmp, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr.decode()[-2000:]}")
        return float(mark.read_text()), resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # kB -> MB


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", default="digits", choices=list(CASES))
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    overrides, plain = CASES[args.case]
    results = {"dlrun": {"first_step_s": [], "peak_rss_mb": []}, "plain": {"first_step_s": [], "peak_rss_mb": []}}
    sides = [("dlrun", ["dlrun", *overrides, "logger=quiet", "trainer.summary=false", "hydra.run.dir=run"]),
             ("plain", [str(ROOT / "benchmarks" / "plain_loop.py"), *plain, "--out", "plain.pt"])]
    for _, cmd in sides:  # a warm-up of each, not counted: bytecode written, files in the page cache
        subprocess.run([sys.executable, __file__, "--one", json.dumps(cmd)], capture_output=True, check=True)
    for rep in range(args.reps):
        for name, cmd in sides if rep % 2 == 0 else sides[::-1]:
            # ru_maxrss of RUSAGE_CHILDREN is a maximum over every child so far: measure each in its own process
            out = subprocess.run([sys.executable, __file__, "--one", json.dumps(cmd)], capture_output=True, text=True)
            if out.returncode:
                raise SystemExit(out.stderr)
            step, rss = json.loads(out.stdout)
            results[name]["first_step_s"].append(step)
            results[name]["peak_rss_mb"].append(rss)
            print(f"rep {rep + 1}: {name:5} first step {step:.2f} s, peak RSS {rss:.0f} MB", flush=True)
    summary = {}
    for metric in ("first_step_s", "peak_rss_mb"):
        d, p = (statistics.median(results[s][metric]) for s in ("dlrun", "plain"))
        summary[metric] = {"dlrun": d, "plain": p, "ratio": d / p}
        print(f"{metric:13} dlrun {d:8.2f}  plain {p:8.2f}  ratio {d / p:.3f}")
    if args.out:
        Path(args.out).write_text(json.dumps({"case": args.case, "reps": args.reps, "runs": results,
                                              "medians": summary}, indent=2))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--one":
        step, rss = measure(json.loads(sys.argv[2]))
        print(json.dumps([step, rss]))
    else:
        main()
