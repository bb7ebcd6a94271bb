"""Batches of a split on the device, in an order that depends only on (seed, epoch), so a resumed run
regenerates it. In a process group each rank reads its own shard: every `world`-th sample of the epoch's order
from its rank on, cut to an equal length (equal step counts: no rank waits for a step the others never take),
so that N ranks at batch B take, step for step, the samples one process takes at batch N*B. In memory (the default): slices of tensors already on the device, no per-sample Python.
`dataset.in_memory=false`: a DataLoader with worker processes and pinned memory serves the same batches."""
from __future__ import annotations

import math

import torch

from dlrun.data.bundle import Split


class Batches:
    """The batches of each split for one run."""

    def __init__(self, device: torch.device, batch_size, seed: int = 0, limit_batches: int | None = None,
                 in_memory: bool = True, num_workers: int = 0, rank: int = 0, world: int = 1):
        self.device, self.batch_size, self.seed, self.rank, self.world = device, batch_size, seed, rank, world
        self.limit_batches, self.in_memory, self.num_workers = limit_batches, in_memory, num_workers
        self._loaders: dict[int, torch.utils.data.DataLoader] = {}  # the DataLoader path's, per split

    def size(self, split: Split) -> int:
        """Samples per batch (`full`: the whole split)."""
        return len(split) if self.batch_size == "full" else int(self.batch_size)

    def count(self, split: Split, n: int | None = None) -> int:
        """Training batches per epoch of this rank (or per pass over `n` samples)."""
        nb = math.ceil((len(split) // self.world if n is None else n) / self.size(split))
        return min(nb, self.limit_batches) if self.limit_batches else nb

    def order(self, split: Split, epoch: int) -> torch.Tensor:
        """The epoch's shuffle, this rank's shard of it: it depends only on (seed, epoch, rank), so a resumed run
        regenerates it."""
        perm = torch.randperm(len(split), generator=torch.Generator().manual_seed(self.seed * 100_003 + epoch))
        return perm if self.world == 1 else perm[self.rank::self.world][:len(split) // self.world]

    def evaluation_order(self, split: Split, whole: bool = False) -> torch.Tensor | None:
        """This rank's share of an evaluation pass (every sample counted once over the ranks), None: all, as stored."""
        return None if self.world == 1 or whole else torch.arange(self.rank, len(split), self.world)

    def __call__(self, split: Split, order: torch.Tensor | None = None, start: int = 0):
        """(x, y) batches on the device, in `order` (None: as stored), from batch `start` on."""
        n, bs = len(split), self.size(split)
        nb = self.count(split, n if order is None else len(order))
        if self.in_memory:
            order = order.to(self.device) if order is not None else None
            for i in range(start, nb):
                idx = order[i * bs:(i + 1) * bs] if order is not None else slice(i * bs, (i + 1) * bs)
                yield split.x[idx], split.y[idx]
            return
        order = order if order is not None else torch.arange(n)
        loader = self._loader(split)
        loader.batch_sampler[:] = [order[i * bs:(i + 1) * bs].tolist() for i in range(start, nb)]
        for x, y in loader:  # a worker's death: see dlrun/train/pipeline.py
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def _loader(self, split: Split) -> torch.utils.data.DataLoader:
        """One DataLoader per split for the whole run, so its workers start once (persistent_workers);
        its batch sampler is a list that `__call__` refills with each pass's index batches."""
        if id(split) not in self._loaders:
            self._loaders[id(split)] = torch.utils.data.DataLoader(
                torch.utils.data.TensorDataset(split.x, split.y), batch_sampler=[], num_workers=self.num_workers,
                pin_memory=self.device.type == "cuda", persistent_workers=self.num_workers > 0,
                # its own generator: the workers' seed must not draw from the global RNG (a resume would diverge)
                generator=torch.Generator().manual_seed(self.seed))
        return self._loaders[id(split)]
