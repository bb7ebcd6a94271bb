"""`dlrun resume=RUN_DIR [KEY=VALUE ...]`: continue a run in its own folder.

A run folder is untrusted input (people pass them around): its saved overrides are taken only if they are
what a run can have written (plain KEY=VALUE and GROUP=OPTION with options of the config search path; no
Hydra settings, no paths, no sweeps). A resume continues the same training, so only some settings may
change (`CHANGEABLE`); the rest are refused, naming the keys, before anything is written. Nothing here
imports torch.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import yaml

from dlrun.config.overrides import check_options, is_hydra_override, override_key, override_value, parse, quote
from dlrun.config.search import config_folders
from dlrun.train import run_folder
from dlrun.errors import DlrunError

# What may differ between a checkpoint's config and the resumed run's (a key, or a prefix ending in "."):
# the length of the run, the learning rate (applied from the next step), and how it is logged, checkpointed
# and where it runs. Everything else (model, data, optimizer, loss, seed, ...) would make another run.
CHANGEABLE = ("trainer.epochs", "optimizer.lr", "resume", "device", "logger.", "sweep.", "trainer.log_every",
              "trainer.summary", "trainer.checkpoint_every_steps", "trainer.export_safetensors",
              "trainer.early_stopping.", "trainer.compile", "trainer.tf32", "trainer.cudnn_benchmark",
              "dataset.in_memory", "dataset.num_workers", "dataset.root", "dataset.download",
              "trainer.devices", "trainer.strategy", "trainer.slow_rank_delay_ms")  # in as many processes, and ways, as it likes


def resume_overrides(overrides: list[str], config_dirs: Iterable[str] = ()) -> list[str]:
    """`resume=DIR [k=v ...]` -> the run's saved overrides, then the new ones, then `resume=` and
    `hydra.run.dir=DIR`, quoted so that any folder name survives Hydra's parser.

    `resume=DIR/checkpoints/X.pt` continues from that checkpoint instead of last.pt (e.g. best.pt when
    last.pt is damaged). A folder whose run never wrote a checkpoint starts again from the beginning."""
    given = [o for o in overrides if override_key(o) == "resume"]
    if not given:
        return overrides
    source = Path(os.path.expanduser(str(override_value(given[-1]))))
    run_dir = source.parent.parent if source.is_file() else source
    run_folder.check_free(run_dir)
    saved_file = run_dir / ".hydra" / "overrides.yaml"
    if not saved_file.is_file():
        raise DlrunError(f"cannot resume {run_dir}: it holds no dlrun run (no .hydra/overrides.yaml, no "
                         "checkpoints/last.pt). Give the folder of a dlrun run (the one with summary.json).")
    new = [o for o in overrides if override_key(o) != "resume"]
    new_keys = {override_key(o) for o in new}
    saved = [o for o in saved_overrides(run_dir, config_dirs) if override_key(o) not in new_keys | {"resume"}]
    return saved + new + [f"resume={quote(str(source))}", f"hydra.run.dir={quote(str(run_dir))}"]


def saved_overrides(run_dir: Path, config_dirs: Iterable[str] = ()) -> list[str]:
    """RUN/.hydra/overrides.yaml, refused unless it is what a dlrun run writes."""
    path = Path(run_dir) / ".hydra" / "overrides.yaml"

    def refuse(why: str) -> DlrunError:
        return DlrunError(f"cannot resume {run_dir}: its .hydra/overrides.yaml {why}. dlrun takes from a run folder "
                          "only plain KEY=VALUE and GROUP=OPTION overrides, never Hydra's own settings (they can "
                          "run code). Nothing was run.")

    try:
        saved = yaml.safe_load(path.read_text(encoding="utf-8"))  # plain data only: no Python tags
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise refuse(f"cannot be read ({type(exc).__name__})") from None
    if not isinstance(saved, list) or not all(isinstance(o, str) for o in saved):
        raise refuse("is not a list of overrides" if saved is not None else "is empty")
    parsed = parse(saved)
    for o in parsed:
        if is_hydra_override(o.input_line):
            raise refuse(f"holds {o.input_line!r}")
        if o.is_sweep_override():
            raise refuse(f"holds the sweep {o.input_line!r} (a run has one value per key)")
    try:
        check_options(parsed, config_folders(config_dirs), strict=True)
    except DlrunError as exc:
        raise refuse(f"names {exc}") from None
    return saved


def _flat(tree, prefix: str = "") -> dict:
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def changes(old: dict, new: dict, epochs_done: int, run_dir: Path) -> dict[str, tuple]:
    """Compare the config a checkpoint was trained with (`old`) and the resumed run's (`new`), both plain
    dicts: {key: (old, new)} of the allowed changes, or a DlrunError naming every key that may not change."""
    a, b = _flat(old), _flat(new)
    diff = {k: (a[k], b[k]) for k in a.keys() & b.keys() if a[k] != b[k]}
    refused = sorted(k for k in diff if not any(k == c or (c.endswith(".") and k.startswith(c)) for c in CHANGEABLE))
    if refused:
        shown = ", ".join(f"{k} ({diff[k][0]!r} -> {diff[k][1]!r})" for k in refused)
        raise DlrunError(f"cannot resume {run_dir}: its checkpoint was trained with other settings: {shown}. A resume "
                         "continues the same training; it may change only trainer.epochs, optimizer.lr, and how "
                         "the run is logged, checkpointed and where it runs. Nothing was changed; for other settings "
                         "start a new run (another hydra.run.dir).")
    epochs = b.get("trainer.epochs")
    if isinstance(epochs, int) and epochs < epochs_done:
        raise DlrunError(f"cannot resume {run_dir} with trainer.epochs={epochs}: it has completed {epochs_done} epochs "
                         "already. Nothing was changed; give trainer.epochs >= that to train it for longer.")
    return {k: v for k, v in diff.items() if k != "resume"}
