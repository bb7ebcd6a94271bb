"""GPU throughput of dlrun's trainer (samples/s, achieved TFLOP/s, fraction of the GPU's peak) and time to accuracy.

Throughput: for each case (a 784-256-128-10 MLP, `cnn`, `resnet`, `airbench`) and variant (precision 32 with and
without TF32, bf16, + channels_last, + torch.compile), one in-process `dlrun.api.run([...])` into a temporary run
folder. samples/s = training samples per epoch / the median `epoch_time` over epochs 2..E (dlrun's own timing of the
training part of an epoch, after a CUDA synchronize; epoch 1 carries the warm-up and any compilation). Nothing is
patched. Achieved TFLOP/s = training FLOPs per sample x samples/s, where the FLOPs per sample are those of one
forward + backward pass of a batch counted by `torch.utils.flop_counter.FlopCounterMode` (matmuls and
convolutions only; the optimizer, norms and activations are left out, as in the usual MFU accounting). % of peak
divides that by the dense (no sparsity) peak of the GPU for the variant's math: FP32, TF32 or BF16 tensor cores.

Data: Fashion-MNIST (Debian's /usr/share/datasets/fashion-mnist) or, without it or with `--data synthetic`,
random uint8 images of CIFAR's shape (3x32x32, 10 classes, registered here as the dataset `bench_random_images`).

Time to accuracy (`--tta`): `dlrun experiment=airbench_cifar10` when CIFAR-10 is in the data folder, else
`experiment=airbench_fashion` with the CIFAR recipe's GPU settings, as a child process; metrics.jsonl is
watched and the first epoch whose val_accuracy reaches `--target` is reported with the wall seconds since the
process started (imports, data loading and compilation included) and the summed `epoch_time` up to that
epoch (training only: what airbench reports, without its whitening init and TTA).

Without a CUDA GPU the script prints "no CUDA GPU: skipped" and exits 0; `--cpu` runs the same cases on the
CPU with tiny settings, to check the script itself.

    .venv/bin/python benchmarks/bench_gpu.py --out gpu.json                 # throughput, all cases and variants
    .venv/bin/python benchmarks/bench_gpu.py --tta --target 0.94 --reps 3   # and time to 94% (CIFAR-10)
    .venv/bin/python benchmarks/bench_gpu.py --cpu --epochs 2 --limit-batches 3 --batch-size 64 --cases cnn
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import dlrun.api

ROOT = Path(__file__).resolve().parent.parent
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")

# Dense peak TFLOP/s (without 2:4 sparsity) from NVIDIA's datasheets, keyed by a pattern of
# torch.cuda.get_device_name(); the first match wins. NVIDIA prints TF32/BF16 with sparsity (2x these).
PEAKS = [  # (pattern, label, {"fp32", "tf32", "bf16"})
    (r"H200.*NVL", "H200 NVL", {"fp32": 60.0, "tf32": 417.5, "bf16": 835.5}),
    (r"H200", "H200 SXM", {"fp32": 67.0, "tf32": 494.5, "bf16": 989.5}),
    (r"H100.*PCIe", "H100 PCIe", {"fp32": 51.0, "tf32": 378.0, "bf16": 756.5}),
    (r"H100.*NVL", "H100 NVL", {"fp32": 60.0, "tf32": 417.5, "bf16": 835.5}),
    (r"H100", "H100 SXM", {"fp32": 67.0, "tf32": 494.5, "bf16": 989.5}),
    (r"A100", "A100", {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0}),
    (r"\bL4\b", "L4", {"fp32": 30.3, "tf32": 60.0, "bf16": 121.0}),
]

CASES = {  # name: (dlrun overrides, image models only: channels_last applies)
    "mlp": (["model=mlp", "model.hidden=[256,128]"], False),
    "cnn": (["model=cnn"], True),
    "resnet": (["model=resnet"], True),
    "airbench": (["model=airbench"], True),
}
VARIANTS = {  # name: dlrun overrides
    "fp32": ["trainer.precision=32", "trainer.tf32=false"],
    "tf32": ["trainer.precision=32", "trainer.tf32=true"],
    "bf16": ["trainer.precision=bf16", "trainer.tf32=true"],
    "bf16+cl": ["trainer.precision=bf16", "trainer.tf32=true", "trainer.channels_last=true"],
    "bf16+cl+compile": ["trainer.precision=bf16", "trainer.tf32=true", "trainer.channels_last=true",
                        "trainer.compile=true"],
}
COMMON = ["seed=0", "optimizer=adam", "optimizer.lr=0.001", "logger=quiet", "trainer.summary=false",
          "trainer.log_every=1000000"]
GPU_SETTINGS = ["trainer.precision=bf16", "trainer.compile=true", "trainer.tf32=true", "trainer.channels_last=true"]


def register_random_images(n: int) -> None:
    """`bench_random_images`: n random CIFAR-shaped uint8 images (+ n/5 val and test), 10 classes."""
    from dlrun.data.bundle import DataBundle, Split
    from dlrun.registry import DATASETS, register_dataset

    if "bench_random_images" in DATASETS:
        return

    @register_dataset("bench_random_images")
    def bench_random_images(n_samples: int = n, split_seed: int = 0, **_ignored) -> DataBundle:
        """Random uint8 3x32x32 images and labels (throughput only: nothing to learn)."""
        g = torch.Generator().manual_seed(split_seed)
        split = lambda k: Split(torch.randint(0, 256, (k, 3, 32, 32), dtype=torch.uint8, generator=g),  # noqa: E731
                                torch.randint(0, 10, (k,), generator=g))
        return DataBundle(split(n_samples), split(n_samples // 5), split(n_samples // 5), input_shape=(3, 32, 32),
                          num_outputs=10, scale=255.0, mean=[0.5] * 3, std=[0.29] * 3)


def data_overrides(kind: str, n: int) -> tuple[list[str], tuple[int, ...]]:
    if kind == "fashion":
        return ["dataset=fashion_mnist", "dataset.download=false"], (1, 28, 28)
    register_random_images(n)  # the synthetic group's keys ride along; the builder ignores them
    return ["dataset=synthetic", "dataset.name=bench_random_images", f"dataset.n_samples={n}"], (3, 32, 32)


def flops_per_sample(overrides: list[str], input_shape: tuple[int, ...], batch: int = 16) -> float:
    """Training FLOPs per sample: one forward + backward of a `batch` on the CPU, FlopCounterMode."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf
    from torch.utils.flop_counter import FlopCounterMode

    from dlrun.config import CONF_DIR
    from dlrun.registry import create_model

    with initialize_config_dir(CONF_DIR, version_base="1.3", job_name="bench"):
        kw = OmegaConf.to_container(compose("config", overrides=overrides).model, resolve=True)
    model = create_model(kw.pop("name"), input_shape=input_shape, num_outputs=10, **kw)
    counter = FlopCounterMode(display=False)
    with counter:
        model(torch.randn(batch, *input_shape)).float().logsumexp(1).sum().backward()
    return counter.get_total_flops() / batch


def gpu_peak(device_name: str) -> tuple[str, dict] | None:
    for pattern, label, peaks in PEAKS:
        if re.search(pattern, device_name):
            return label, peaks
    return None


def math_kind(variant: str) -> str:
    over = VARIANTS[variant]
    return "bf16" if "trainer.precision=bf16" in over else "tf32" if "trainer.tf32=true" in over else "fp32"


def throughput(case: str, variant: str, args, device: str, peak) -> dict:
    """One in-process dlrun run; samples/s from the median epoch_time over epochs 2..E."""
    data, shape = data_overrides(args.data, args.synthetic_n)
    overrides = [*COMMON, f"device={device}", *data, *CASES[case][0], *VARIANTS[variant],
                 f"trainer.epochs={args.epochs}", f"trainer.batch_size={args.batch_size}"]
    if args.limit_batches:
        overrides.append(f"trainer.limit_batches={args.limit_batches}")
    tmp = Path(tempfile.mkdtemp(prefix="bench_gpu_"))
    try:
        out = dlrun.api.run(overrides, run_dir=str(tmp / "run"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    n = out["summary"]["n_train"]
    if args.limit_batches:
        n = min(n, args.limit_batches * args.batch_size)
    seconds = statistics.median(row["epoch_time"] for row in out["history"][1:])
    flops = flops_per_sample(overrides, shape)
    row = {"case": case, "data": args.data, "variant": variant, "batch_size": args.batch_size,
           "epochs": args.epochs, "samples_per_epoch": n, "epoch_s": seconds, "samples_per_s": n / seconds,
           "train_gflop_per_sample": flops / 1e9, "tflops": flops * n / seconds / 1e12, "overrides": overrides}
    if peak:
        label, peaks = peak
        kind = math_kind(variant)
        row.update(peak=f"{label} {kind} {peaks[kind]:g}", peak_fraction=row["tflops"] / peaks[kind])
    return row


def cifar_present(root: str | None) -> bool:
    base = Path(os.path.expanduser(root or os.environ.get("DLRUN_DATA", "~/.cache/dlrun/data")))
    return (base / "cifar-10-batches-py").is_dir() or (base / "cifar-10-python.tar.gz").is_file()


def time_to_accuracy(args, device: str, rep: int) -> dict:
    """A child `dlrun experiment=...`; the wall time at which each metrics.jsonl row appears."""
    if cifar_present(args.data_root):
        recipe = ["experiment=airbench_cifar10", *([f"dataset.root={args.data_root}"] if args.data_root else [])]
    else:
        recipe = ["experiment=airbench_fashion", *(GPU_SETTINGS if device == "cuda" else [])]
    extra = [f"device={device}", f"seed={rep}"]
    if args.cpu:  # a smoke test of this code, not a measurement
        extra += ["trainer.precision=32", "trainer.compile=false", f"trainer.epochs={args.epochs}",
                  f"trainer.batch_size={args.batch_size}", f"trainer.limit_batches={args.limit_batches or 3}"]
    tmp = Path(tempfile.mkdtemp(prefix="bench_tta_"))
    run_dir, seen = tmp / "run", []
    exe = Path(sys.executable).parent / "dlrun"
    cmd = [str(exe) if exe.exists() else "dlrun", *recipe, *extra, f"hydra.run.dir={run_dir}"]
    t0 = time.perf_counter()
    with open(tmp / "stderr.txt", "w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, cwd=ROOT)
    try:
        while True:
            done = proc.poll() is not None
            metrics = run_dir / "metrics.jsonl"
            lines = metrics.read_text().splitlines(keepends=True) if metrics.exists() else []
            now = time.perf_counter() - t0
            seen += [(now, json.loads(line)) for line in lines[len(seen):] if line.endswith("\n")]  # whole rows
            if done:
                break
            time.sleep(0.05)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{(tmp / 'stderr.txt').read_text()[-3000:]}")
        summary = json.loads((run_dir / "summary.json").read_text())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    hit = next(((t, r) for t, r in seen if r.get("val_accuracy", 0) >= args.target), None)
    best = max(r.get("val_accuracy", 0) for _, r in seen)
    out = {"recipe": recipe[0].split("=", 1)[1], "rep": rep, "target": args.target, "reached": hit is not None,
           "best_val_accuracy": best, "test_accuracy": summary.get("test_accuracy"),
           "epochs": len(seen), "process_s": time.perf_counter() - t0, "command": cmd}
    if hit:
        t, r = hit
        train_s = sum(x["epoch_time"] for _, x in seen if x["epoch"] <= r["epoch"])
        out.update(epoch=r["epoch"], wall_s=t, train_s=train_s, val_accuracy=r["val_accuracy"])
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, from {', '.join(CASES)}")
    ap.add_argument("--variants", default=None,
                    help=f"comma-separated, from {', '.join(VARIANTS)} (default: all; with --cpu: fp32,bf16+cl)")
    ap.add_argument("--data", choices=("auto", "fashion", "synthetic"), default="auto",
                    help="auto: Fashion-MNIST when installed, else random CIFAR-shaped images")
    ap.add_argument("--synthetic-n", type=int, default=50_000, help="training images of the synthetic data")
    ap.add_argument("--epochs", type=int, default=4, help="epochs per throughput run (epoch 1 is warm-up)")
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--limit-batches", type=int, default=None, help="cap on batches per split and epoch")
    ap.add_argument("--tta", action="store_true", help="also measure time to accuracy of the airbench recipe")
    ap.add_argument("--tta-only", action="store_true", help="only the time-to-accuracy runs")
    ap.add_argument("--target", type=float, default=None, help="val accuracy target (default 0.94 CIFAR, 0.93 Fashion)")
    ap.add_argument("--reps", type=int, default=1, help="time-to-accuracy repetitions (seeds 0..reps-1)")
    ap.add_argument("--data-root", default=None, help="where CIFAR-10 lies (dataset.root)")
    ap.add_argument("--cpu", action="store_true", help="no GPU: run on the CPU with tiny settings (a smoke test)")
    ap.add_argument("--out", default=None, help="also write the results as JSON here")
    args = ap.parse_args()
    if args.epochs < 2:
        ap.error("--epochs must be at least 2 (epoch 1 is excluded as warm-up)")
    cases = [c for c in args.cases.split(",") if c]
    variants = [v for v in (args.variants or ("fp32,bf16+cl" if args.cpu else ",".join(VARIANTS))).split(",") if v]
    bad = [c for c in cases if c not in CASES] + [v for v in variants if v not in VARIANTS]
    if bad:
        ap.error(f"unknown case or variant {bad}; cases: {list(CASES)}, variants: {list(VARIANTS)}")

    if not torch.cuda.is_available() and not args.cpu:
        print("no CUDA GPU: skipped (run with --cpu to smoke-test this script on the CPU)")
        return 0
    device = "cpu" if args.cpu else "cuda"
    if args.data == "auto":
        args.data = "fashion" if FASHION_DIR.is_dir() else "synthetic"
    name = torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu"
    peak = gpu_peak(name) if device == "cuda" else None
    print(f"device: {name} ({device}); peak: {peak[0] if peak else 'n/a'}; data: {args.data}; "
          f"torch {torch.__version__}")

    rows = []
    for case in [] if args.tta_only else cases:
        for variant in variants:
            if "+cl" in variant and not CASES[case][1]:
                continue  # channels_last means nothing to an MLP
            print(f"  {case} {variant} ...", flush=True)
            rows.append(throughput(case, variant, args, device, peak))
            r = rows[-1]
            print(f"    {r['samples_per_s']:.0f} samples/s, {r['tflops']:.3f} TFLOP/s", flush=True)

    tta = []
    if args.tta or args.tta_only:
        if args.target is None:
            args.target = 0.94 if cifar_present(args.data_root) else 0.93
        for rep in range(args.reps):
            print(f"  time to {args.target:.2%} val accuracy, rep {rep + 1}/{args.reps} ...", flush=True)
            tta.append(time_to_accuracy(args, device, rep))

    if rows:
        print(f"\n| case | data | variant | batch | s/epoch | samples/s | GFLOP/sample (train) | TFLOP/s | % of peak |")
        print("|---|---|---|---:|---:|---:|---:|---:|---:|")
        for r in rows:
            frac = f"{100 * r['peak_fraction']:.1f}% of {r['peak']}" if "peak" in r else "n/a"
            print(f"| {r['case']} | {r['data']} | {r['variant']} | {r['batch_size']} | {r['epoch_s']:.3f} | "
                  f"{r['samples_per_s']:,.0f} | {r['train_gflop_per_sample']:.4f} | {r['tflops']:.3f} | {frac} |")
    if tta:
        print("\n| recipe | rep | target | reached at epoch | wall s (process) | train s (sum of epoch_time) | "
              "best val acc | test acc |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for t in tta:
            at = (f"{t['epoch']} | {t['wall_s']:.1f} | {t['train_s']:.2f}" if t["reached"]
                  else f"not reached in {t['epochs']} | - | -")
            print(f"| {t['recipe']} | {t['rep']} | {t['target']:.3f} | {at} | {t['best_val_accuracy']:.4f} | "
                  f"{t['test_accuracy']:.4f} |")
    if args.out:
        machine = {"device": name, "device_type": device, "peak": peak[0] if peak else None,
                   "torch": torch.__version__, "cuda": torch.version.cuda, "platform": platform.platform(),
                   "python": platform.python_version(), "cpus": os.cpu_count()}
        Path(args.out).write_text(json.dumps({"machine": machine, "throughput": rows, "time_to_accuracy": tta},
                                             indent=2))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
