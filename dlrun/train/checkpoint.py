"""Checkpoints: written atomically, read with `weights_only=True` (a checkpoint can never run code).

Each checkpoint `X.pt` has a record `X.pt.json` with its size and sha256, written at save time and
checked at load time, so a truncated or corrupted file is named instead of being half-loaded.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shlex
import warnings
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
    """The size/sha256 record of a checkpoint (None when there is none); a record that is not what
    `save_checkpoint` writes is a DlrunError naming it."""
    rec = record_path(path)
    if not rec.exists():
        return None
    try:
        entry = json.loads(rec.read_text())
    except (OSError, ValueError) as exc:
        raise DlrunError(f"the checksum record {rec} of checkpoint {path} cannot be read ({exc})") from None
    entries = [entry, *([entry["replacing"]] if isinstance(entry, dict) and "replacing" in entry else [])]
    if not all(isinstance(e, dict) and isinstance(e.get("size"), int) and isinstance(e.get("sha256"), str)
               for e in entries):
        raise DlrunError(f"the checksum record {rec} of checkpoint {path} is not one dlrun writes (it needs "
                         "'size' and 'sha256'); delete it to load the checkpoint unchecked, or restore it.")
    return entry


class _WriteErrors:
    """A file wrapper that remembers the OSError of a failed write. torch.save reports its writer's errors
    as a RuntimeError ('unexpected pos ...'); with this, a full disk is told as the full disk it is."""

    def __init__(self, f):
        self.f, self.error = f, None

    def write(self, data) -> int:
        try:
            return self.f.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def flush(self) -> None:
        self.f.flush()


def save_checkpoint(state: dict, path: Path) -> None:
    """Write `state` atomically, with its size and sha256 in `path.json`.

    The record is written before the rename and lists the file it replaces ("replacing"), then rewritten
    without it, so a crash between the two renames never makes an intact file look corrupted. Any failure
    to write (a full disk inside torch.save included) is a DlrunError that says what is still intact.
    """
    path = Path(path)
    info = {k: state[k] for k in ("epoch", "step", "epoch_step") if k in state}
    entry: dict = {}
    existed = path.exists()

    def record(tmp: Path) -> None:
        entry.update(file=path.name, **_digest(tmp), **info)
        old = _read_record(path) if path.exists() else None
        if old is not None:  # describe the file on disk now; after a torn save only hashing it can tell
            entry["replacing"] = _digest(path) if "replacing" in old else {k: old[k] for k in ("size", "sha256")}
        _write_record(path, entry)

    def write(f) -> None:
        out = _WriteErrors(f)
        try:
            torch.save(state, out)
        except RuntimeError:
            if out.error is not None:
                raise out.error from None
            raise

    try:
        atomic_write(path, write, before_replace=record)
    except OSError as exc:
        intact = [p.name for p in sorted(path.parent.glob("*.pt")) if p != path]
        kept = ("The previous checkpoint is intact." if existed else "No checkpoint of this name was written before.")
        if intact:
            kept += f" Intact: {', '.join(intact)}."
        elif not existed:
            kept = "No checkpoint was written before it."
        raise DlrunError(f"could not write checkpoint {path}: {exc}. {kept}", exit_code=1) from exc
    try:  # a tidy-up: the record that also lists the replaced file checks the new one just as well
        _write_record(path, {k: v for k, v in entry.items() if k != "replacing"}, durable=False)
    except OSError:
        pass


def _write_record(path: Path, entry: dict, durable: bool = True) -> None:
    text = json.dumps(entry, indent=1)
    atomic_write(record_path(path), lambda f: f.write(text.encode()), durable=durable)


def checkpoint_problem(path: Path) -> str | None:
    """Why `path` does not match the size and sha256 recorded when it was saved, or None (no record: nothing
    to check). Raises DlrunError for a record that cannot be read."""
    path = Path(path)
    rec = _read_record(path)
    if rec is None:
        return None
    size = path.stat().st_size
    known = [e for e in (rec, rec.get("replacing")) if e]
    if not any(e["size"] == size for e in known):
        return f"it has {size} bytes, and {rec['size']} were recorded when it was saved (truncated?)"
    if _digest(path)["sha256"] not in {e["sha256"] for e in known}:
        return "its sha256 differs from the one recorded when it was saved"
    return None


def verify_checkpoint(path: Path) -> None:
    """Compare `path` with its record; a mismatch is a DlrunError naming the checkpoints still intact."""
    problem = checkpoint_problem(path)
    if problem is not None:
        raise DlrunError(f"checkpoint {path} is corrupted: {problem}. {_fallback(Path(path))}")


def _fallback(bad: Path) -> str:
    """Name the other checkpoints in the folder that still verify, and how to continue from one."""
    good = []
    for other in sorted(bad.parent.glob("*.pt")):
        if other == bad:
            continue
        try:
            rec = _read_record(other)
            if rec is not None and checkpoint_problem(other) is None:
                good.append((other, rec))
        except (DlrunError, OSError):
            continue
    if not good:
        return f"No other checkpoint in {bad.parent} is intact."
    names = ", ".join(f"{p} (epoch {r.get('epoch', '?')}, step {r.get('step', '?')})" for p, r in good)
    hint = (f" Continue from it with `dlrun {shlex.quote(f'resume={good[0][0]}')}`."
            if bad.parent.name == "checkpoints" else "")
    return f"Intact earlier checkpoint{'s' if len(good) > 1 else ''}: {names}.{hint}"


def safe_load(path: Path, what: str, map_location="cpu", exit_code: int = 2):
    """`torch.load(path, weights_only=True)`: tensors and plain data only, so nothing in the file can run.
    A file that holds anything else is refused as what it is (not a dlrun checkpoint / tensor file), never
    with torch's advice to load it unsafely. `what` names the file in the message ("checkpoint X")."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's notes on pickle protocols: the refusal below says it all
            return torch.load(path, map_location=map_location, weights_only=True)  # no fallback, ever
    except Exception as exc:
        names = sorted(set(re.findall(r"GLOBAL ([\w.]+)", str(exc))))
        if names:
            why = (f"it names Python objects ({', '.join(f'GLOBAL {n}' for n in names)}) that only a pickle "
                   "that runs code needs, so it is not a dlrun checkpoint or a plain tensor file")
        else:
            advice = ("weights_only", "still be loaded", "trust", "safe_globals", "add_safe_globals")
            detail = str(exc).split("Unpickler error:", 1)[-1] if "Unpickler error:" in str(exc) else str(exc)
            first = next((ln.strip() for ln in detail.splitlines() if ln.strip() and not any(a in ln for a in advice)),
                         type(exc).__name__)
            why = f"it is truncated, corrupted or not a PyTorch file ({type(exc).__name__}: {first[:200]})"
        raise DlrunError(f"{what} cannot be read safely: {why}. dlrun loads only tensors and plain data; the file "
                         "was not loaded and nothing in it was run.", exit_code=exit_code) from None


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    path = Path(path)
    if not path.exists():
        raise DlrunError(f"no checkpoint at {path}")
    verify_checkpoint(path)
    state = safe_load(path, f"checkpoint {path}", map_location)
    if not isinstance(state, dict):
        raise DlrunError(f"checkpoint {path} is not a dlrun checkpoint (it holds a {type(state).__name__}, not a "
                         "mapping of the run's state).")
    return state


def save_safetensors(model: torch.nn.Module, path: Path, metadata: dict | None = None) -> None:
    """A module's weights as safetensors (tensors only, nothing to unpickle) with string metadata, atomically."""
    from safetensors.torch import save

    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}  # clone: no sharing
    data = save(tensors, metadata={"format": "pt", **(metadata or {})})
    atomic_write(path, lambda f: f.write(data))


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
