"""A run folder's guarantees: one process at a time, writable before work starts, its config recorded only
when the run really starts, and nothing left behind by a run that never started.

- `lock(run_dir)`: an exclusive `flock` on RUN/.dlrun.lock, held for the life of the process. The kernel
  drops it when the process dies (even by kill -9), so a crash never leaves a stale lock; a second dlrun
  on the same folder stops at once, naming the holder's pid. Re-entrant within one process.
- `prepare(run_dir)`: creates the folder (and its parents), refusing names the file system cannot hold and
  folders that cannot be written, with a one-line error instead of a traceback.
- `record_config`: .hydra/config.yaml and .hydra/overrides.yaml, written atomically by dlrun (Hydra writes
  nothing into a single run's folder), once the run's checks have passed.
- `forget_unstarted`: removes what a run that failed before training wrote (the folders it created too).
- `open_log`: RUN/dlrun.log, the run's main events (start, config, epochs, checkpoints, end).
Nothing here imports torch.
"""
from __future__ import annotations

import errno
import fcntl
import logging
import os
import shlex
from pathlib import Path

from dlrun.errors import DlrunError

LOCK_NAME = ".dlrun.lock"
LAUNCHED_ENV = "DLRUN_LAUNCHED_RUN"  # the run folder whose lock the launching process holds (trainer.devices=N)
LOG_NAME = "dlrun.log"
_HELD: dict[str, int] = {}  # resolved run folder -> the fd holding its lock, in this process
_MADE: dict[str, list[Path]] = {}  # resolved run folder -> the folders and files this process created for it
WRITE_ERRORS = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded",
                errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied",
                errno.EPERM: "permission denied", errno.ENAMETOOLONG: "the name is too long for the file system"}


def write_error(exc: OSError) -> str | None:
    """What an OSError means for a user (the disk is full, read-only, ...), or None for other errors."""
    return WRITE_ERRORS.get(exc.errno)


def _key(run_dir: Path) -> str:
    return str(Path(run_dir).resolve())


def continue_hint(run_dir: Path) -> str:
    """The command that continues a run, quoted for a POSIX shell."""
    return f"dlrun {shlex.quote(f'resume={run_dir}')}"


def refuse_if_taken(run_dir: Path) -> None:
    """A new run never writes into a folder that already holds one (it would be overwritten)."""
    run_dir = Path(run_dir)
    check_name(run_dir)
    if (run_dir / "summary.json").exists() or (run_dir / "checkpoints").exists():
        raise DlrunError(f"{run_dir} already holds a run; nothing was changed. Continue it with "
                         f"`{continue_hint(run_dir)}`, or choose another hydra.run.dir.")


def claim(run_dir: Path, new: bool) -> None:
    """Before a run starts: a new run refuses a folder that holds one; the folder is locked, unless the process
    that launched this one (trainer.devices=N) holds its lock for it."""
    if new:
        refuse_if_taken(run_dir)
    if os.environ.get(LAUNCHED_ENV) != _key(run_dir):
        lock(run_dir)


def check_name(run_dir: Path) -> None:
    """A folder name longer than the file system allows is a DlrunError (exit 1), before any use of it."""
    run_dir = Path(run_dir)
    try:
        max_name = os.pathconf(_existing_ancestor(run_dir), "PC_NAME_MAX")
    except OSError:
        max_name = 255
    too_long = [p for p in run_dir.parts if len(os.fsencode(p)) > max_name]
    if too_long:
        raise DlrunError(f"cannot use the run folder {run_dir}: the name '{too_long[0][:40]}...' has "
                         f"{len(os.fsencode(too_long[0]))} bytes, and this file system allows {max_name}. "
                         "Choose a shorter hydra.run.dir.", exit_code=1)


def prepare(run_dir: Path) -> None:
    """Create `run_dir` and its missing parents (remembered, for `forget_unstarted`); a name too long for
    the file system or a folder that cannot be written is a DlrunError (exit 1)."""
    run_dir = Path(run_dir)
    check_name(run_dir)
    missing = [p for p in (run_dir, *run_dir.parents) if not p.exists()][::-1]
    try:
        for p in missing:
            p.mkdir()
            _made(run_dir, p)
    except FileExistsError:
        pass
    except OSError as exc:
        raise DlrunError(f"cannot create the run folder {run_dir}: {write_error(exc) or exc.strerror} "
                         f"({exc.filename}). Choose another with hydra.run.dir=DIR.", exit_code=1) from None


def _made(run_dir: Path, path: Path) -> None:
    _MADE.setdefault(_key(run_dir), []).append(Path(path))


def _existing_ancestor(path: Path) -> Path:
    return next(p for p in (path, *path.parents) if p.exists())


def lock(run_dir: Path) -> None:
    """Hold RUN/.dlrun.lock for the rest of this process (a no-op if it already does)."""
    key = _key(run_dir)
    if key in _HELD:
        return
    prepare(run_dir)
    path = Path(run_dir) / LOCK_NAME
    existed = path.exists()
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise DlrunError(f"cannot write in the run folder {run_dir}: {write_error(exc) or exc.strerror}. "
                         "Choose another with hydra.run.dir=DIR.", exit_code=1) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        error = _in_use(run_dir, fd)
        os.close(fd)
        raise error from None
    if not existed:
        _made(run_dir, path)
    _HELD[key] = fd


def _in_use(run_dir: Path, fd: int) -> DlrunError:
    return DlrunError(f"{run_dir} is in use by another dlrun process ({_holder(os.fstat(fd).st_ino)}); nothing was "
                      "changed. Wait for it to end, or stop it, then run again.", exit_code=1)


def _holder(inode: int) -> str:
    """'pid N' of the process holding the flock on `inode`, read from the kernel's table (/proc/locks), so
    the lock file itself is never written."""
    try:
        for line in Path("/proc/locks").read_text().splitlines():
            fields = line.split()
            if "FLOCK" in fields and fields[-3].rsplit(":", 1)[-1] == str(inode):
                return f"pid {fields[-4]}"
    except (OSError, IndexError):
        pass
    return "pid unknown"


def check_free(run_dir: Path) -> None:
    """Refuse at once a folder another process holds (before reading anything in it)."""
    path = Path(run_dir) / LOCK_NAME
    if _key(run_dir) in _HELD or not path.exists():
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        raise _in_use(run_dir, fd) from None
    finally:
        os.close(fd)


def unlock(run_dir: Path) -> None:
    fd = _HELD.pop(_key(run_dir), None)
    if fd is not None:
        os.close(fd)  # closing the last descriptor releases the flock


def record_config(run_dir: Path, config_yaml: str, overrides: list[str]) -> None:
    """.hydra/config.yaml and .hydra/overrides.yaml, each replaced atomically."""
    import yaml

    from dlrun.train.checkpoint import atomic_write

    folder = Path(run_dir) / ".hydra"
    if not folder.exists():
        folder.mkdir()
        _made(run_dir, folder)
    texts = {"config.yaml": config_yaml, "overrides.yaml": yaml.safe_dump(list(overrides), allow_unicode=True)}
    for name, text in texts.items():
        if not (folder / name).exists():
            _made(run_dir, folder / name)
        atomic_write(folder / name, lambda f, t=text: f.write(t.encode()))


def forget_unstarted(run_dir: Path) -> None:
    """Remove what a run that never started wrote (its records, log and lock, and the folders this process
    created for it, once empty). Files that were there before are never touched."""
    run_dir = Path(run_dir)
    close_log(run_dir)
    unlock(run_dir)
    made = _MADE.pop(_key(run_dir), [])
    for path in reversed(made):
        try:
            path.rmdir() if path.is_dir() else path.unlink()  # a folder only when empty
        except OSError:
            pass


OUTPUTS = ("checkpoints", "metrics.jsonl", "metrics.csv", "summary.json", "tb", "model.safetensors", "samples.txt",
           "embeddings.tsv", "neighbours.txt", "confusion_matrix.png", "reconstructions.png", "samples.png")


def clear_outputs(run_dir: Path) -> None:
    """Remove what an earlier attempt of a run wrote (before it is started again); records and log stay."""
    import shutil

    for name in OUTPUTS:
        path = Path(run_dir) / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


# ---- the run's log file ---------------------------------------------------------------------------
log = logging.getLogger("dlrun")


def open_log(run_dir: Path) -> None:
    """Send the "dlrun" logger's INFO lines to RUN/dlrun.log (appended: a resumed run continues it)."""
    close_log(run_dir)
    path = Path(run_dir) / LOG_NAME
    if not path.exists():
        _made(run_dir, path)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("[%(asctime)s] %(message)s", "%Y-%m-%d %H:%M:%S"))
    handler.set_name(_key(run_dir))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False  # the console shows its own lines; the log file is not echoed there


def close_log(run_dir: Path) -> None:
    for handler in [h for h in log.handlers if h.get_name() == _key(run_dir)]:
        log.removeHandler(handler)
        try:
            handler.close()
        except OSError:
            pass
