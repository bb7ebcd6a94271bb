"""dlrun's training-loop overhead against a plain hand-written PyTorch loop, side by side.

Two measurements per case, each repeated `--reps` times with dlrun and the plain loop alternating
(the order flips every repetition, so drift and warm caches hit both sides alike):

1. epoch   Seconds of *training* per epoch, in this process. dlrun: `dlrun.api.run([...])` into a
           fresh temporary run folder; its history rows carry `epoch_time`, the training part of
           each epoch (validation and checkpointing excluded). Plain: `plain_loop.train_epoch` on the
           same data (`dlrun.data.build_dataset`) and model (`dlrun.registry.create_model`), with
           Adam(lr=1e-3), CrossEntropyLoss, batch 64, a shuffled permutation per epoch, the loss
           summed on the device (no per-step `.item()`), and a validation pass per epoch (untimed).
           Each side's number is the median over epochs 2..E (epoch 1 is warm-up). Alongside that
           wall time, process CPU time over the same stretch (dlrun: a wrapper around
           `SupervisedLoop._train_epoch`), which other jobs on a shared machine disturb far less.
2. e2e     Wall time of a whole process: `dlrun <overrides> logger=quiet hydra.run.dir=<tmp>`
           against `python benchmarks/plain_loop.py ...` (imports, data, training, validation per
           epoch, test, one `torch.save`). dlrun also writes metrics files and last/best checkpoints
           every epoch and re-loads the best weights for the test: that is part of what it costs.
           Wall time, and the child's CPU time (user + system, from getrusage).

Both sides use torch.manual_seed(0) and the same torch thread count (`--threads`, default 1).
Ratio = dlrun / plain, so 1.00 means no overhead. Prints a table (min / median / max of the ratio
over repetitions) and optionally writes JSON (`--out`).

    .venv/bin/python benchmarks/bench_epoch.py --reps 5 --out /tmp/bench.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import plain_loop  # noqa: E402  (the baseline lives next to this file)

import dlrun.api  # noqa: E402
from dlrun.train.loop import SupervisedLoop  # noqa: E402

FASHION_AVAILABLE = Path("/usr/share/datasets/fashion-mnist").is_dir() or \
    Path("~/.cache/dlrun/data/FashionMNIST/raw").expanduser().is_dir()
FASHION = ["dataset=fashion_mnist", "dataset.download=false"]
CASES = {  # name: (dataset, model, dlrun overrides, default epochs)
    "fashion_mlp": ("fashion_mnist", "mlp", FASHION + ["model=mlp", "model.hidden=[256,128]"], 3),
    "fashion_cnn": ("fashion_mnist", "cnn", FASHION + ["model=cnn"], 3),
    "digits_mlp": ("digits", "mlp", ["dataset=digits", "model=mlp", "model.hidden=[256,128]"], 20),
}
COMMON = ["seed=0", "device=cpu", "optimizer=adam", "optimizer.lr=0.001", "trainer.batch_size=64"]


def dlrun_epoch(case: str, epochs: int) -> tuple[float, float]:
    """(wall, cpu) medians over epochs 2..E of an in-process dlrun run: wall is dlrun's own
    `epoch_time`; cpu is process CPU time around `SupervisedLoop._train_epoch` (a measuring wrapper only)."""
    *_, overrides, _ = CASES[case]
    cpu, inner = [], SupervisedLoop._train_epoch

    def measured(self, epoch):
        c0 = time.process_time()
        out = inner(self, epoch)
        cpu.append(time.process_time() - c0)
        return out

    tmp = Path(tempfile.mkdtemp(prefix="bench_dlrun_"))
    SupervisedLoop._train_epoch = measured
    try:
        out = dlrun.api.run(COMMON + overrides + ["logger=quiet", "trainer.summary=false",
                                                  f"trainer.epochs={epochs}"], run_dir=str(tmp / "run"))
    finally:
        SupervisedLoop._train_epoch = inner
        shutil.rmtree(tmp, ignore_errors=True)
    return statistics.median(row["epoch_time"] for row in out["history"][1:]), statistics.median(cpu[1:])


def plain_epoch(case: str, epochs: int) -> tuple[float, float]:
    """(wall, cpu) medians over epochs 2..E of the hand-written loop; validation runs, untimed."""
    dataset, model_name, *_ = CASES[case]
    data, model, opt, loss_fn = plain_loop.build(dataset, model_name, seed=0)
    wall, cpu = [], []
    for _ in range(epochs):
        c0 = time.process_time()
        wall.append(plain_loop.train_epoch(data, model, opt, loss_fn, batch_size=64)[1])
        cpu.append(time.process_time() - c0)
        plain_loop.evaluate(data, model, loss_fn, data.val)
    return statistics.median(wall[1:]), statistics.median(cpu[1:])


def timed(cmd: list[str]) -> tuple[float, float]:
    """(wall, cpu) seconds of a child process; cpu = its user + system time."""
    r0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return wall, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)


def dlrun_e2e(case: str, epochs: int) -> tuple[float, float]:
    *_, overrides, _ = CASES[case]
    exe = Path(sys.executable).parent / "dlrun"
    tmp = Path(tempfile.mkdtemp(prefix="bench_dlrun_"))
    try:
        return timed([str(exe if exe.exists() else shutil.which("dlrun")), *COMMON, *overrides,
                      "logger=quiet", f"trainer.epochs={epochs}", f"hydra.run.dir={tmp / 'run'}"])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def plain_e2e(case: str, epochs: int) -> tuple[float, float]:
    dataset, model_name, *_ = CASES[case]
    tmp = Path(tempfile.mkdtemp(prefix="bench_plain_"))
    try:
        return timed([sys.executable, str(HERE / "plain_loop.py"), "--dataset", dataset, "--model", model_name,
                      "--epochs", str(epochs), "--seed", "0", "--out", str(tmp / "model.pt")])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def stats(d: list[float], p: list[float]) -> dict:
    ratios = [a / b for a, b in zip(d, p)]
    return {"dlrun_s": d, "plain_s": p, "ratio": ratios, "dlrun_median_s": statistics.median(d),
            "plain_median_s": statistics.median(p), "ratio_min": min(ratios),
            "ratio_median": statistics.median(ratios), "ratio_max": max(ratios)}


def compare(metric: str, case: str, epochs: int, reps: int, dlrun_fn, plain_fn) -> dict:
    """Alternate the two sides `reps` times (order flipped each time); ratios dlrun / plain."""
    d, p = [], []
    for rep in range(reps):
        sides = [(dlrun_fn, d), (plain_fn, p)]
        for fn, sink in sides if rep % 2 == 0 else sides[::-1]:
            sink.append(fn(case, epochs))
        (dw, dc), (pw, pc) = d[-1], p[-1]
        print(f"  {metric:5} {case:12} rep {rep + 1}/{reps}: wall dlrun {dw:.3f}s plain {pw:.3f}s ratio {dw / pw:.3f}"
              f" | cpu dlrun {dc:.3f}s plain {pc:.3f}s ratio {dc / pc:.3f}", flush=True)
    return {"metric": metric, "case": case, "epochs": epochs, "wall": stats([w for w, _ in d], [w for w, _ in p]),
            "cpu": stats([c for _, c in d], [c for _, c in p])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, from {', '.join(CASES)}")
    ap.add_argument("--e2e-cases", default="digits_mlp,fashion_mlp",
                    help="cases for the end-to-end comparison ('' to skip)")
    ap.add_argument("--epochs", type=int, default=None, help="epochs per run (default: 3 fashion, 20 digits)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads for both sides (default 1: on a busy 2-core box, 2 threads swing 10x)")
    ap.add_argument("--out", default=None, help="also write the results as JSON here")
    args = ap.parse_args()
    if args.epochs is not None and args.epochs < 2:
        ap.error("--epochs must be at least 2 (epoch 1 is excluded as warm-up)")
    torch.set_num_threads(args.threads)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # the same for both subprocesses

    def selected(spec: str) -> list[str]:
        names = [c for c in spec.split(",") if c]
        unknown = [c for c in names if c not in CASES]
        if unknown:
            ap.error(f"unknown case(s) {unknown}; choose from {list(CASES)}")
        skipped = [c for c in names if CASES[c][0] == "fashion_mnist" and not FASHION_AVAILABLE]
        for c in skipped:
            print(f"skipping {c}: Fashion-MNIST not found in /usr/share/datasets/fashion-mnist")
        return [c for c in names if c not in skipped]

    load_before = os.getloadavg()
    results = []
    for case in selected(args.cases):
        results.append(compare("epoch", case, args.epochs or CASES[case][3], args.reps, dlrun_epoch, plain_epoch))
    for case in selected(args.e2e_cases):
        results.append(compare("e2e", case, args.epochs or CASES[case][3], args.reps, dlrun_e2e, plain_e2e))

    print(f"\n{'metric':6} {'case':12} {'epochs':>6} {'clock':5} {'dlrun s':>8} {'plain s':>8} "
          f"{'ratio min':>9} {'median':>7} {'max':>7}")
    for r in results:
        for clock in ("wall", "cpu"):
            c = r[clock]
            print(f"{r['metric']:6} {r['case']:12} {r['epochs']:>6} {clock:5} {c['dlrun_median_s']:>8.3f} "
                  f"{c['plain_median_s']:>8.3f} {c['ratio_min']:>9.3f} {c['ratio_median']:>7.3f} "
                  f"{c['ratio_max']:>7.3f}")
    print("(seconds: medians over repetitions; epoch = training seconds per epoch, e2e = the whole process;\n"
          " wall = elapsed time, cpu = CPU time of this process / the child, less sensitive to other load)")
    if args.out:
        machine = {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(),
                   "threads": args.threads, "torch": torch.__version__, "cuda": torch.cuda.is_available(),
                   "python": platform.python_version(), "dlrun": dlrun.api.__file__, "loadavg_before": load_before,
                   "loadavg_after": os.getloadavg()}
        doc = {"machine": machine, "reps": args.reps, "overrides": {c: COMMON + CASES[c][2] for c in CASES},
               "results": results}
        Path(args.out).write_text(json.dumps(doc, indent=2))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
