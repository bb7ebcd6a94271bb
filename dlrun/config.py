"""Config checks that run before anything heavy: typos with suggestions, types and ranges, resume.

Nothing here imports torch, so `dlrun --help`, `--cfg job` and bad input answer quickly.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf

from dlrun import sweep as _sweep  # noqa: F401  registers ${dlrun_job_dir:}, hydra.sweep.subdir's resolver
from dlrun.errors import DlrunError, did_you_mean

CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")
GROUPS = ("model", "optimizer", "scheduler", "dataset", "trainer", "loss", "logger", "experiment", "debug",
          "hparams_search")


def group_options(group: str) -> list[str]:
    folder = Path(CONF_DIR, group)
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


# ---- value checks (types and ranges), applied to the composed config ------------------------------
def _positive_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# key -> (check, what is allowed); applied when the composed config has the key
RANGES = {
    "trainer.max_grad_norm": (lambda v: v is None or (_number(v) and v > 0), "null or a number > 0"),
    "trainer.clip_value": (lambda v: v is None or (_number(v) and v > 0), "null or a number > 0"),
    "trainer.checkpoint_every_steps": (lambda v: v is None or _positive_int(v), "null or a positive integer"),
    "trainer.log_every": (_positive_int, "a positive integer"),
    "trainer.deterministic": (lambda v: isinstance(v, bool), "true or false"),
    "trainer.export_safetensors": (lambda v: isinstance(v, bool), "true or false"),
    "optimizer.momentum": (lambda v: _number(v) and 0 <= v <= 1, "a number in [0, 1]"),
    "optimizer.weight_decay": (lambda v: _number(v) and v >= 0, "a number >= 0"),
    "optimizer.eps": (lambda v: _number(v) and v > 0, "a number > 0"),
    "optimizer.betas": (lambda v: isinstance(v, ListConfig) and len(v) == 2 and all(_number(b) and 0 <= b < 1 for b in v),
                        "two numbers in [0, 1)"),
    "scheduler.gamma": (lambda v: _number(v) and v > 0, "a number > 0"),
    "scheduler.step_size": (_positive_int, "a positive integer"),
    "loss.label_smoothing": (lambda v: _number(v) and 0 <= v < 1, "a number in [0, 1)"),
    "dataset.val_split": (lambda v: _number(v) and 0 <= v < 1, "a number in [0, 1)"),
    "dataset.test_split": (lambda v: _number(v) and 0 < v < 1, "a number in (0, 1)"),
    "dataset.num_workers": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0, "an integer >= 0"),
    "dataset.in_memory": (lambda v: isinstance(v, bool), "true or false"),
}
ON_NONFINITE = ("stop", "skip")
ALLOWED_TARGETS: frozenset[str] = frozenset()  # dlrun instantiates nothing named in a config: components come
# from the registries (model=NAME, optimizer=NAME, ...); Hydra's own hydra.* settings are not user config


def _targets(node, path: str = ""):
    """(key, value) of every `_target_` in a config tree, read without resolving anything."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for k, v in items:
        key = f"{path}.{k}" if path else str(k)
        if k == "_target_":
            yield key, v
        yield from _targets(v, key)


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
    for key, (check, allowed) in RANGES.items():
        value = OmegaConf.select(cfg, key, default=RANGES)
        if value is not RANGES and not check(value):
            bad(key, value, allowed)
    on_nonfinite = t.get("on_nonfinite", "stop")
    if on_nonfinite not in ON_NONFINITE:
        bad("trainer.on_nonfinite", on_nonfinite, f"stop or skip.{did_you_mean(str(on_nonfinite), ON_NONFINITE)}")
    for key, target in _targets(OmegaConf.to_container(cfg, resolve=False)):
        if target not in ALLOWED_TARGETS:
            bad(key, target, "no _target_: dlrun never instantiates a class named in a config; components come "
                "from the registries (model=NAME, optimizer=NAME, ...; plugins: see `dlrun list`)")
    on_failure = cfg.get("sweep", {}).get("on_failure", "continue")
    if on_failure not in ("continue", "stop"):
        bad("sweep.on_failure", on_failure, f"continue or stop.{did_you_mean(str(on_failure), ['continue', 'stop'])}")
    if problems:
        raise DlrunError("invalid config:\n  " + "\n  ".join(problems))


# ---- command-line overrides: resume and early typo detection ---------------------------------------
def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def resume_overrides(overrides: list[str]) -> list[str]:
    """`resume=DIR [k=v ...]` -> the run's saved overrides, then the new ones, then `hydra.run.dir=DIR`.

    `resume=DIR/checkpoints/X.pt` continues from that checkpoint instead of last.pt (e.g. best.pt when
    last.pt is damaged). The saved overrides come from a folder that may not be trusted: Hydra's own
    settings (`hydra.*`, which can name callbacks to instantiate) are refused there.
    """
    given = [o for o in overrides if _key(o) == "resume"]
    if not given:
        return overrides
    source = Path(os.path.expanduser(given[-1].split("=", 1)[1]))
    run_dir = source.parent.parent if source.is_file() else source
    saved_file = run_dir / ".hydra" / "overrides.yaml"
    if not (source.is_file() or (run_dir / "checkpoints" / "last.pt").exists()) or not saved_file.exists():
        raise DlrunError(f"cannot resume {run_dir}: it has no checkpoints/last.pt and .hydra/overrides.yaml. "
                         "Give the folder of a dlrun run (the one with summary.json).")
    new = [o for o in overrides if _key(o) != "resume"]
    new_keys = {_key(o) for o in new}
    saved = OmegaConf.load(saved_file)
    for o in saved:
        if not isinstance(o, str) or _key(o).startswith("hydra"):
            raise DlrunError(f"cannot resume {run_dir}: its .hydra/overrides.yaml holds {o!r}; dlrun takes only "
                             "config overrides from a run folder, never Hydra's own settings (they can run code). "
                             "Nothing was run.")
    saved = [o for o in saved if _key(o) not in new_keys and _key(o) != "resume"]
    return saved + new + [f"resume={source}", f"hydra.run.dir={run_dir}"]


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
