"""Config checks that run before anything heavy: typos with suggestions, types and ranges, resume.

Nothing here imports torch, so `dlrun --help`, `--cfg job` and bad input answer quickly.
"""
from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from pathlib import Path
from typing import Iterable

from omegaconf import DictConfig, ListConfig, OmegaConf

from dlrun import schema
from dlrun import sweep as _sweep  # noqa: F401  registers ${dlrun_job_dir:}, hydra.sweep.subdir's resolver
from dlrun.errors import DlrunError, did_you_mean

CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")
GROUPS = ("model", "optimizer", "scheduler", "dataset", "trainer", "loss", "logger", "experiment", "debug",
          "hparams_search")


def group_options(group: str) -> list[str]:
    folder = Path(CONF_DIR, group)
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


# ---- value checks against the schemas (dlrun/schema.py), applied to the composed config -----------
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


def _fits(value, tp) -> bool:
    """Whether `value` (as OmegaConf holds it) has the type `tp` (a schema annotation)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, a) for a in args)
    if origin is typing.Literal:
        return any(value == a and type(value) is type(a) for a in args)
    if tp is list or origin is list:
        return isinstance(value, (list, ListConfig)) and all(_fits(v, args[0]) for v in value if args)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if dataclasses.is_dataclass(tp):
        return isinstance(value, (dict, DictConfig))
    return isinstance(value, tp)  # bool, str, NoneType


def _describe(tp) -> str:
    """What a type allows, in words: `Optional[int]` -> 'null or an integer'."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in sorted(args, key=lambda a: a is not type(None)))
    if origin is typing.Literal:
        return ", ".join(map(str, args[:-1])) + f" or {args[-1]}" if len(args) > 1 else str(args[0])
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string", type(None): "null"}
    return names.get(tp) or ("a list" if tp is list or origin is list else "a mapping")


def _choices(tp) -> list[str]:
    """The strings a Literal (possibly inside a Union) allows, for 'did you mean'."""
    if typing.get_origin(tp) is typing.Literal:
        return [a for a in typing.get_args(tp) if isinstance(a, str)]
    return [c for a in typing.get_args(tp) for c in _choices(a)]


def _check(node: DictConfig, schema: type, path: str, added, problems: list[str]) -> None:
    """Check each key of `node` against the dataclass `schema`; nested schemas recursively."""
    hints, fields = typing.get_type_hints(schema), {f.name: f for f in dataclasses.fields(schema)}
    for key in node:
        full = f"{path}{key}"
        if key not in fields:
            if not (getattr(schema, "EXTRA_KEYS", False) or added is None or full in added
                    or key in ("_target_", "hydra")):
                problems.append(f"unknown key '{full}'.{did_you_mean(str(key), fields)}")
            continue
        value, tp, meta = node[key], hints[key], fields[key].metadata
        # a nested schema, alone or in a Union (logger.tensorboard: true | {graph: ...})
        sub = next((a for a in (tp, *typing.get_args(tp)) if dataclasses.is_dataclass(a)), None)
        if sub is not None and isinstance(value, DictConfig):
            _check(value, sub, full + ".", added, problems)
            continue
        check = meta.get("check")
        if not _fits(value, tp) or (value is not None and check is not None and not check(value)):
            allowed = meta.get("allowed") or _describe(tp)
            hint = did_you_mean(value, _choices(tp)) if isinstance(value, str) else ""
            problems.append(f"{full}={value!r} is not allowed: {allowed}{'.' + hint if hint else ''}")


def validate(cfg: DictConfig, added: Iterable[str] | None = None) -> None:
    """Check the composed config against the schemas in dlrun/schema.py; raise one DlrunError naming, for
    each problem, the key, the value and what is allowed.

    `added`: the keys the command line added on purpose (`+KEY=VALUE`); any other key that a schema lacks
    (a typo in a config file) is refused with a suggestion. None leaves unknown keys unchecked, for a
    config whose overrides `check_overrides` has already checked.
    """
    problems: list[str] = []
    for key, target in _targets(OmegaConf.to_container(cfg, resolve=False)):
        if target not in ALLOWED_TARGETS:
            problems.append(f"{key}={target!r} is not allowed: no _target_: dlrun never instantiates a class named "
                            "in a config; components come from the registries (model=NAME, optimizer=NAME, ...; "
                            "plugins: see `dlrun list`)")
    _check(cfg, schema.Config, "", None if added is None else set(added), problems)
    if problems:  # one problem on one line (a sweep's failure line shows the first line)
        raise DlrunError("invalid config:" + ("\n  " if len(problems) > 1 else " ") + "\n  ".join(problems))


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


def _first_values(overrides: list[str], config_dirs: Iterable[str] = ()) -> list[str]:
    """One job's worth of overrides (first value of each sweep), leaving out Hydra's own settings except
    the search path, to which `--config-dir` folders are added (user configs: experiment=MINE)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    out, search = [], [f"file://{Path(d).resolve()}" for d in config_dirs]
    for o in OverridesParser.create().parse_overrides(overrides):
        key = o.get_key_element()
        if key == "hydra.searchpath" and isinstance(o.value(), list):
            search += [str(p) for p in o.value()]
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
    return out + ([f"hydra.searchpath=[{','.join(repr(p) for p in search)}]"] if search else [])


def check_overrides(overrides: list[str], config_dirs: Iterable[str] = ()) -> None:
    """Compose once (no torch) so a mistyped key or option, or a bad value, is refused before any work.

    `config_dirs`: the `--config-dir` folders of the command line (where user configs may live)."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException

    try:
        job = _first_values(overrides, config_dirs)
    except OverrideParseException as exc:
        raise DlrunError(f"cannot parse the overrides: {exc}") from None
    with initialize_config_dir(CONF_DIR, version_base="1.3", job_name="dlrun"):
        try:
            validate(compose("config", overrides=job), added={_key(o) for o in job if o.startswith("+")})
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
