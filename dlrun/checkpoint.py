"""Checkpoints: written atomically, read with `weights_only=True` (a checkpoint can never run code).

Each checkpoint `X.pt` has a record `X.pt.json` with its size and sha256, written at save time and
checked at load time, so a truncated or corrupted file is named instead of being half-loaded.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path

import numpy as np
import torch

from dlrun.errors import DlrunError


def atomic_write(path: Path, write, before_replace=None, durable: bool = True) -> None:
    """Call `write(fileobj)` on a temp file next to `path`, fsync it, rename it over `path`, fsync the folder.

    A crash at any moment leaves either the old file or the new one, never half of one.
    `before_replace(tmp)` runs once the temp file is complete, before the rename. `durable=False` skips
    the fsyncs: still never half a file after a crash of the process, but a power cut may keep the old one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        if before_replace is not None:
            before_replace(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if not durable:
        return
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def record_path(path: Path) -> Path:
    return Path(path).with_name(Path(path).name + ".json")


def _digest(path: Path) -> dict:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return {"size": Path(path).stat().st_size, "sha256": h.hexdigest()}


def _read_record(path: Path) -> dict | None:
    rec = record_path(path)
    if not rec.exists():
        return None
    try:
        return json.loads(rec.read_text())
    except (OSError, ValueError) as exc:
        raise DlrunError(f"the checksum record {rec} of checkpoint {path} cannot be read ({exc})") from None


def save_checkpoint(state: dict, path: Path) -> None:
    """Write `state` atomically, with its size and sha256 in `path.json`.

    The record is written before the rename and lists the file it replaces ("replacing"), then rewritten
    without it, so a crash between the two renames never makes an intact file look corrupted.
    """
    path = Path(path)
    info = {k: state[k] for k in ("epoch", "step", "epoch_step") if k in state}
    entry: dict = {}

    def record(tmp: Path) -> None:
        entry.update(file=path.name, **_digest(tmp), **info)
        old = _read_record(path) if path.exists() else None
        if old is not None:  # describe the file on disk now; after a torn save only hashing it can tell
            entry["replacing"] = _digest(path) if "replacing" in old else {k: old[k] for k in ("size", "sha256")}
        _write_record(path, entry)

    try:
        atomic_write(path, lambda f: torch.save(state, f), before_replace=record)
        _write_record(path, {k: v for k, v in entry.items() if k != "replacing"}, durable=False)  # a tidy-up
    except OSError as exc:
        raise DlrunError(f"could not write checkpoint {path}: {exc}. The previous checkpoint is intact.",
                         exit_code=1) from exc


def _write_record(path: Path, entry: dict, durable: bool = True) -> None:
    text = json.dumps(entry, indent=1)
    atomic_write(record_path(path), lambda f: f.write(text.encode()), durable=durable)


def verify_checkpoint(path: Path) -> None:
    """Compare `path` with the size and sha256 recorded when it was saved (no record: nothing to check)."""
    path = Path(path)
    rec = _read_record(path)
    if rec is None:
        return
    size = path.stat().st_size
    known = [e for e in (rec, rec.get("replacing")) if e]
    if not any(e["size"] == size for e in known):
        problem = f"it has {size} bytes, and {rec['size']} were recorded when it was saved (truncated?)"
    elif _digest(path)["sha256"] not in {e["sha256"] for e in known}:
        problem = "its sha256 differs from the one recorded when it was saved"
    else:
        return
    raise DlrunError(f"checkpoint {path} is corrupted: {problem}. {_fallback(path)}")


def _fallback(bad: Path) -> str:
    """Name the other checkpoints in the folder that still verify, and how to continue from one."""
    good = []
    for other in sorted(bad.parent.glob("*.pt")):
        try:
            rec = _read_record(other) if other != bad else None
            if rec is not None:
                verify_checkpoint(other)
                good.append((other, rec))
        except DlrunError:
            continue
    if not good:
        return f"No other checkpoint in {bad.parent} is intact."
    names = ", ".join(f"{p} (epoch {r.get('epoch', '?')}, step {r.get('step', '?')})" for p, r in good)
    hint = f" Continue from it with `dlrun resume={good[0][0]}`." if bad.parent.name == "checkpoints" else ""
    return f"Intact earlier checkpoint{'s' if len(good) > 1 else ''}: {names}.{hint}"


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    path = Path(path)
    if not path.exists():
        raise DlrunError(f"no checkpoint at {path}")
    verify_checkpoint(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)  # no fallback, ever
    except Exception as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        detail = next((line for line in lines if "GLOBAL" in line), lines[0] if lines else "")
        raise DlrunError(f"checkpoint {path} cannot be read safely ({type(exc).__name__}: {detail}). dlrun loads "
                         "only tensors and plain data, so nothing in it was run; it may be truncated, corrupted, or "
                         "crafted to run code.") from None


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
