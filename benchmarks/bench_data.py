"""dlrun's data paths against torchvision's Dataset + DataLoader pipeline (the pytorch/examples way).

Fashion-MNIST, batch 64, one torch thread, the CPU. Three pipelines serve shuffled, normalised float
batches:
- `torchvision`: `datasets.FashionMNIST(transform=Compose([ToTensor(), Normalize(...)]))` and
  `DataLoader(shuffle=True, num_workers=W)`, as pytorch/examples/mnist writes it: a PIL image and
  a transform per sample, then collation;
- `dlrun in-memory`: dlrun's default, uint8 tensors sliced per batch (`dlrun.data.loader.Batches`) and
  normalised per batch (`DataBundle.prepare`);
- `dlrun DataLoader`: `dataset.in_memory=false`, dlrun's worker path (persistent workers).

Two measurements, each as samples per second over one pass, alternating pipelines, `--reps` times:
`data` only produces the batches; `train` also trains the 784-256-128-10 MLP (Adam) on them.

    python benchmarks/bench_data.py --reps 3 --workers 0,2 --out data.json
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch
from omegaconf import OmegaConf
from torch import nn

from dlrun.data import build_dataset
from dlrun.data.loader import Batches
from dlrun.registry import create_model


def torchvision_batches(root: str, mean: float, std: float, workers: int):
    from torchvision import datasets, transforms

    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((mean,), (std,))])
    ds = datasets.FashionMNIST(root, train=True, download=False, transform=tf)
    loader = torch.utils.data.DataLoader(ds, batch_size=64, shuffle=True, num_workers=workers,
                                         persistent_workers=workers > 0)
    return len(ds), lambda: iter(loader)


def dlrun_batches(data, in_memory: bool, workers: int):
    t = Batches(torch.device("cpu"), 64, in_memory=in_memory, num_workers=workers)
    epoch = [0]

    def one_pass():
        epoch[0] += 1
        return ((data.prepare(x), y) for x, y in t(data.train, t.order(data.train, epoch[0])))
    return len(data.train), one_pass


def timed_pass(n: int, batches, train: bool) -> float:
    """Samples per second of one pass over `batches()`, training the MLP on them when `train`."""
    if train:
        torch.manual_seed(0)
        model = create_model("mlp", input_shape=(1, 28, 28), num_outputs=10, hidden=[256, 128])
        opt, loss_fn = torch.optim.Adam(model.parameters(), lr=1e-3), nn.CrossEntropyLoss()
    t0 = time.perf_counter()
    for x, y in batches():
        if train:
            loss = loss_fn(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        else:
            x.sum()  # touch the batch
    return n / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--workers", default="0,2", help="DataLoader worker counts to try")
    p.add_argument("--root", default="~/.cache/dlrun/data")
    p.add_argument("--modes", default="data,train")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    torch.set_num_threads(1)
    data = build_dataset(OmegaConf.create({"name": "fashion_mnist", "root": args.root, "download": False,
                                           "val_split": 0.1, "split_seed": 0}))
    root = os.path.expanduser(args.root)
    workers = [int(w) for w in args.workers.split(",")]
    pipelines = {"dlrun in-memory": dlrun_batches(data, True, 0)}
    for w in workers:
        pipelines[f"torchvision W={w}"] = torchvision_batches(root, data.mean[0], data.std[0], w)
        pipelines[f"dlrun DataLoader W={w}"] = dlrun_batches(data, False, w)
    results = {}
    for mode in args.modes.split(","):
        for name, (n, batches) in pipelines.items():
            timed_pass(n, batches, train=False)  # warm-up: start workers, touch the pages
        for rep in range(args.reps):
            for name, (n, batches) in (list(pipelines.items())[::-1] if rep % 2 else pipelines.items()):
                results.setdefault(mode, {}).setdefault(name, []).append(timed_pass(n, batches, mode == "train"))
                print(f"  {mode:5s} {name:24s} rep {rep + 1}: {results[mode][name][-1]:10,.0f} samples/s", flush=True)
    print(f"\n| mode | pipeline | samples/s (median of {args.reps}) | vs torchvision W={workers[0]} |")
    print("|---|---|---:|---:|")
    for mode, by_name in results.items():
        base = statistics.median(by_name[f"torchvision W={workers[0]}"])
        for name, vals in by_name.items():
            med = statistics.median(vals)
            print(f"| {mode} | {name} | {med:,.0f} | {med / base:.2f}x |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
