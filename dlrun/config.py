"""Config checks that run before anything heavy: typos with suggestions, types and ranges, resume.

Nothing here imports torch, so `dlrun --help`, `--cfg job` and bad input answer quickly.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from dlrun.errors import DlrunError, did_you_mean

CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")
GROUPS = ("model", "optimizer", "scheduler", "dataset", "trainer", "loss", "logger", "experiment", "debug")


def group_options(group: str) -> list[str]:
    folder = Path(CONF_DIR, group)
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


# ---- value checks (types and ranges), applied to the composed config ------------------------------
def _positive_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def validate(cfg: DictConfig) -> None:
    """Reject wrong types and out-of-range values naming the key, the value and what is allowed."""
    t, problems = cfg.trainer, []

    def bad(key, value, allowed):
        problems.append(f"{key}={value!r} is not allowed: {allowed}")

    if not _positive_int(t.epochs):
        bad("trainer.epochs", t.epochs, "a positive integer")
    if not (_positive_int(t.batch_size) or t.batch_size == "full"):
        bad("trainer.batch_size", t.batch_size, "a positive integer or 'full'")
    lr = cfg.optimizer.get("lr")
    if lr is not None and (isinstance(lr, bool) or not isinstance(lr, (int, float)) or lr <= 0):
        bad("optimizer.lr", lr, "a number > 0")
    dropout = cfg.model.get("dropout")
    if dropout is not None and (isinstance(dropout, bool) or not isinstance(dropout, (int, float))
                                or not 0 <= dropout < 1):
        bad("model.dropout", dropout, "a number in [0, 1)")
    if not isinstance(cfg.seed, int) or isinstance(cfg.seed, bool):
        bad("seed", cfg.seed, "an integer")
    for key in ("l1", "l2"):
        v = t.get(key, 0.0)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            bad(f"trainer.{key}", v, "a number >= 0")
    patience = t.early_stopping.patience
    if patience is not None and not _positive_int(patience):
        bad("trainer.early_stopping.patience", patience, "null (off) or a positive integer")
    if t.limit_batches is not None and not _positive_int(t.limit_batches):
        bad("trainer.limit_batches", t.limit_batches, "null or a positive integer")
    if problems:
        raise DlrunError("invalid config:\n  " + "\n  ".join(problems))


# ---- command-line overrides: resume and early typo detection ---------------------------------------
def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def resume_overrides(overrides: list[str]) -> list[str]:
    """`resume=DIR [k=v ...]` -> the run's saved overrides, then the new ones, then `hydra.run.dir=DIR`."""
    given = [o for o in overrides if _key(o) == "resume"]
    if not given:
        return overrides
    run_dir = Path(os.path.expanduser(given[-1].split("=", 1)[1]))
    saved_file = run_dir / ".hydra" / "overrides.yaml"
    if not (run_dir / "checkpoints" / "last.pt").exists() or not saved_file.exists():
        raise DlrunError(f"cannot resume {run_dir}: it has no checkpoints/last.pt and .hydra/overrides.yaml. "
                         "Give the folder of a dlrun run (the one with summary.json).")
    new = [o for o in overrides if _key(o) != "resume"]
    new_keys = {_key(o) for o in new}
    saved = [o for o in OmegaConf.load(saved_file)
             if _key(o) not in new_keys and _key(o) not in ("resume", "hydra.run.dir")]
    return saved + new + [f"resume={run_dir}", f"hydra.run.dir={run_dir}"]


def guard_run_dir(overrides: list[str]) -> None:
    """Refuse to start a new run in a folder that already holds one (it would be overwritten)."""
    if any(_key(o) == "resume" for o in overrides):
        return
    for o in overrides:
        if _key(o) == "hydra.run.dir":
            run_dir = Path(o.split("=", 1)[1])
            if (run_dir / "summary.json").exists() or (run_dir / "checkpoints").exists():
                raise DlrunError(f"{run_dir} already holds a run; nothing was changed. Continue it with "
                                 f"`dlrun resume={run_dir}`, or choose another hydra.run.dir.")


def _first_values(overrides: list[str]) -> list[str]:
    """One job's worth of overrides (first value of each sweep), leaving out Hydra's own."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    out = []
    for o in OverridesParser.create().parse_overrides(overrides):
        key = o.get_key_element()
        if o.key_or_group.startswith("hydra") or key.startswith("hydra"):
            continue
        if o.is_sweep_override():
            try:
                first = next(iter(o.sweep_string_iterator()))
            except Exception:  # e.g. glob(): leave it to Hydra
                continue
            out.append(f"{key}={first}")
        else:
            out.append(o.input_line)
    return out


def check_overrides(overrides: list[str]) -> None:
    """Compose once (no torch) so a mistyped key or option gets a 'did you mean' before any work."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException

    try:
        job = _first_values(overrides)
    except OverrideParseException as exc:
        raise DlrunError(f"cannot parse the overrides: {exc}") from None
    with initialize_config_dir(CONF_DIR, version_base="1.3", job_name="dlrun"):
        try:
            validate(compose("config", overrides=job))
        except MissingConfigException as exc:
            raise DlrunError(_explain_missing(str(exc))) from None
        except ConfigCompositionException as exc:
            cause = exc.__cause__ or exc
            msg = _explain_key(str(cause), job, compose) or str(exc) or f"{type(cause).__name__}: {cause}"
            raise DlrunError(f"the config could not be composed: {msg}" if msg == str(exc) else msg) from None


def _explain_missing(msg: str) -> str:
    m = re.search(r"Could not find '([^'/]+)/([^']+)'", msg)
    if not m:
        return msg
    group, name = m.groups()
    options = group_options(group)
    return (f"unknown {group} '{name}'.{did_you_mean(name, options)}\n"
            f"Available {group} options: {', '.join(options)}")


def _explain_key(msg: str, job: list[str], compose) -> str | None:
    m = re.search(r"full_key: (\S+)", msg)
    if not m or "not in struct" not in msg:
        return None
    full_key = m.group(1)
    parent_key, _, leaf = full_key.rpartition(".")
    rest = [o for o in job if _key(o) != full_key]
    try:
        parent = compose("config", overrides=rest)
        parent = OmegaConf.select(parent, parent_key) if parent_key else parent
    except Exception:
        return None
    keys = [k for k in parent.keys()] if isinstance(parent, DictConfig) else []
    where = f"'{parent_key}'" if parent_key else "the top level"
    return (f"unknown key '{full_key}'.{did_you_mean(leaf, keys)}\n"
            f"Keys in {where}: {', '.join(keys)}\n"
            f"(To add a new key on purpose, write +{full_key}=...)")


def register_plugin_configs() -> None:
    """Give each plugin model/dataset a config option of its own, so `model=NAME` works for plugins.

    Reads entry-point metadata only (no plugin is imported). Extra arguments go in with
    `+model.KEY=VALUE`; the plugin's own defaults apply otherwise.
    """
    from importlib.metadata import entry_points

    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    for group, ep_group in (("model", "dlrun.models"), ("dataset", "dlrun.datasets")):
        builtin = set(group_options(group))
        for ep in entry_points(group=ep_group):
            name = ep.name.lower()
            if name not in builtin:
                node = {"name": name} if group == "model" else {"name": name, "in_memory": True, "num_workers": 0, "augment": []}
                cs.store(group=group, name=name, node=node)
