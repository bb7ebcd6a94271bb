"""Data larger than memory (`dataset.in_memory=false` for your own tables and image folders): the inputs are
prepared once, chunk by chunk, into a `.npy` file in split order (the training rows, then validation, then test),
and memory-mapped. Each split is then a view of the file, never a copy in RAM, and the DataLoader path reads its
batches from disk (through the page cache) with its worker processes.

The file is kept under `$DLRUN_DATA/prepared/` (default ~/.cache/dlrun/data), named by a hash of the source's path,
size and modification time and of the settings that shape it, so a second run with the same data and settings
opens it at once; a changed source or setting gets a new file. It is written to a temporary name and renamed when
complete, so an interrupted preparation never leaves a half-written file that a later run would trust.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch


def data_root() -> Path:
    """Where dlrun keeps data it downloads or prepares: $DLRUN_DATA, else ~/.cache/dlrun/data."""
    return Path(os.path.expanduser(os.environ.get("DLRUN_DATA", "~/.cache/dlrun/data")))


def prepared_path(source: Path, settings: dict, kind: str) -> Path:
    """Where the prepared inputs of `source` (a file or folder) with these settings live."""
    info = source.stat()
    key = json.dumps([str(source.resolve()), info.st_size, info.st_mtime_ns, settings], sort_keys=True, default=str)
    return data_root() / "prepared" / f"{kind}-{source.stem}-{hashlib.sha1(key.encode()).hexdigest()[:16]}.npy"


class Destination:
    """Where prepared rows go: an array in memory, or a new memory-mapped `.npy` file (`path`)."""

    def __init__(self, shape: tuple[int, ...], dtype, path: Path | None = None):
        self.path, self.tmp = path, None
        if path is None:
            self.array = np.empty(shape, dtype)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            self.array = np.lib.format.open_memmap(self.tmp, mode="w+", dtype=dtype, shape=shape)

    def put(self, positions: np.ndarray, rows: np.ndarray) -> None:
        self.array[positions] = rows

    def finish(self) -> torch.Tensor:
        """The prepared rows as a tensor: the array itself, or the file memory-mapped (once complete, renamed)."""
        if self.path is None:
            return torch.from_numpy(self.array)
        self.array.flush()
        del self.array
        os.replace(self.tmp, self.path)
        return open_prepared(self.path)


def open_prepared(path: Path) -> torch.Tensor:
    """A prepared file memory-mapped copy-on-write: pages are read when a batch needs them, and nothing a run
    does to the tensor is written back."""
    return torch.from_numpy(np.load(path, mmap_mode="c"))
