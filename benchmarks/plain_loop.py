"""The hand-written PyTorch loop that dlrun is compared against (see bench_epoch.py).

Same data (through `dlrun.data.build_dataset`) and same model (`dlrun.registry.create_model`) as a
dlrun run, then the loop a careful user writes: a shuffled permutation per epoch, batches sliced from
in-memory tensors, `data.prepare(x)` per batch, forward / loss / zero_grad / backward / step, the
loss summed on the device (no per-step `.item()`), a validation pass per epoch, a test pass at the
end and one `torch.save` of the weights.

    python benchmarks/plain_loop.py --dataset digits --model mlp --epochs 20 --out /tmp/plain.pt
"""
from __future__ import annotations

import argparse
import time

import torch
from omegaconf import OmegaConf
from torch import nn

from dlrun.data import build_dataset
from dlrun.registry import create_model

DATASETS = {
    "digits": {"name": "digits", "val_split": 0.1, "test_split": 0.2, "split_seed": 0},
    "fashion_mnist": {"name": "fashion_mnist", "root": "~/.cache/dlrun/data", "download": False,
                      "val_split": 0.1, "split_seed": 0},
}
MODELS = {"mlp": {"hidden": [256, 128]}, "cnn": {}}  # the same arguments as conf/model/*.yaml defaults


def build(dataset: str, model: str, seed: int = 0, lr: float = 1e-3):
    """(data, model, optimizer, loss_fn), seeded like dlrun (torch.manual_seed before the model)."""
    torch.manual_seed(seed)
    data = build_dataset(OmegaConf.create(DATASETS[dataset]))
    net = create_model(model, input_shape=data.input_shape, num_outputs=data.num_outputs, **MODELS[model])
    return data, net, torch.optim.Adam(net.parameters(), lr=lr), nn.CrossEntropyLoss()


def train_epoch(data, model, opt, loss_fn, batch_size: int = 64) -> tuple[float, float]:
    """One training epoch; returns (mean training loss, seconds of training)."""
    model.train()
    x_all, y_all = data.train.x, data.train.y
    t0 = time.perf_counter()
    order = torch.randperm(len(y_all))
    loss_sum = torch.zeros(())
    for i in range(0, len(y_all), batch_size):
        idx = order[i:i + batch_size]
        x, y = x_all[idx], y_all[idx]
        loss = loss_fn(model(data.prepare(x)), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_sum += loss.detach() * len(y)
    mean_loss = loss_sum.item() / len(y_all)  # the one host read of the epoch
    return mean_loss, time.perf_counter() - t0


@torch.no_grad()
def evaluate(data, model, loss_fn, split, batch_size: int = 64) -> tuple[float, float]:
    """(mean loss, accuracy) over a split."""
    model.eval()
    loss_sum, correct = torch.zeros(()), torch.zeros((), dtype=torch.long)
    for i in range(0, len(split.y), batch_size):
        x, y = split.x[i:i + batch_size], split.y[i:i + batch_size]
        out = model(data.prepare(x))
        loss_sum += loss_fn(out, y) * len(y)
        correct += (out.argmax(1) == y).sum()
    return loss_sum.item() / len(split.y), correct.item() / len(split.y)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", choices=DATASETS, default="digits")
    p.add_argument("--model", choices=MODELS, default="mlp")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="plain_model.pt", help="where the final weights are saved")
    args = p.parse_args()
    data, model, opt, loss_fn = build(args.dataset, args.model, args.seed, args.lr)
    for epoch in range(1, args.epochs + 1):
        train_loss, seconds = train_epoch(data, model, opt, loss_fn, args.batch_size)
        val_loss, val_acc = evaluate(data, model, loss_fn, data.val, args.batch_size)
        print(f"epoch {epoch}: train_loss {train_loss:.4f} val_loss {val_loss:.4f} "
              f"val_acc {val_acc:.4f} ({seconds:.2f}s)")
    test_loss, test_acc = evaluate(data, model, loss_fn, data.test, args.batch_size)
    print(f"test_loss {test_loss:.4f} test_acc {test_acc:.4f}")
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict()}, args.out)


if __name__ == "__main__":
    main()
