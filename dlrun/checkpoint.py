"""Checkpoints: written atomically, read with `weights_only=True` (a checkpoint can never run code)."""
from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

from dlrun.errors import DlrunError


def atomic_write(path: Path, write) -> None:
    """Call `write(fileobj)` on a temp file next to `path`, fsync it, rename it over `path`, fsync the folder.

    A crash at any moment leaves either the old file or the new one, never half of one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(state: dict, path: Path) -> None:
    try:
        atomic_write(path, lambda f: torch.save(state, f))
    except OSError as exc:
        raise DlrunError(f"could not write checkpoint {path}: {exc}. The previous checkpoint is intact.",
                         exit_code=1) from exc


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    path = Path(path)
    if not path.exists():
        raise DlrunError(f"no checkpoint at {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise DlrunError(f"checkpoint {path} cannot be read safely ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''}). It may be truncated, corrupted, "
                         "or hold objects other than tensors and plain data.") from exc


def rng_state() -> dict:
    """Every random number generator's state, as tensors and plain data (loadable with weights_only)."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *map(_plain, np_state[2:])],
        "python": _plain(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    kind, key, *rest = state["numpy"]
    np.random.set_state((kind, key.numpy().astype(np.uint32), *rest))
    random.setstate(_tuples(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _plain(x):
    return list(map(_plain, x)) if isinstance(x, (tuple, list)) else x


def _tuples(x):
    return tuple(map(_tuples, x)) if isinstance(x, list) else x
