"""The composed config against the schemas (dlrun/config/schema.py): types, ranges, unknown and missing keys,
and no `_target_` that would make Hydra or dlrun instantiate a class named in a config."""
from __future__ import annotations

import dataclasses
import types
import typing
from typing import Iterable

from omegaconf import DictConfig, ListConfig, OmegaConf

import dlrun.config.schema as schema
from dlrun.errors import DlrunError, did_you_mean

# ---- value checks against the schemas (dlrun/schema.py), applied to the composed config -----------
HYDRA_TARGETS = frozenset({  # what Hydra itself may instantiate: dlrun's callback, the launchers and sweepers it ships
    "dlrun.sweep.callback.SweepDirCallback",
    "hydra._internal.core_plugins.basic_launcher.BasicLauncher",
    "hydra._internal.core_plugins.basic_sweeper.BasicSweeper",
    "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher",
    "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher",
    "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher",
    "hydra_plugins.dlrun_optuna.sweeper.DlrunOptunaSweeper",
})

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
    if tp is dict or origin is dict:
        return isinstance(value, (dict, DictConfig)) and all(_fits(v, args[1]) for v in value.values() if args)
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
        if key == "hydra" and not path:
            continue  # Hydra's own settings: see validate_hydra
        if key not in fields:
            if not (getattr(schema, "EXTRA_KEYS", False) or added is None or full in added or key == "_target_"):
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
    for name in getattr(schema, "REQUIRED", fields):
        if name not in node:
            allowed = fields[name].metadata.get("allowed") or _describe(hints[name])
            problems.append(f"{path}{name} is missing ({allowed}); a run needs it, so it cannot be deleted")

def validate(cfg: DictConfig, added: Iterable[str] | None = None) -> None:
    """Check the composed config against the schemas in dlrun/schema.py; raise one DlrunError naming, for
    each problem, the key, the value and what is allowed.

    `added`: the keys the command line added on purpose (`+KEY=VALUE`); any other key that a schema lacks
    (a typo in a config file) is refused with a suggestion. None leaves unknown keys unchecked, for a
    config whose overrides `check_overrides` has already checked.
    """
    problems: list[str] = []
    # dlrun instantiates nothing named in a config: components come from the registries (model=NAME, ...)
    for key, target in _targets({k: v for k, v in OmegaConf.to_container(cfg, resolve=False).items() if k != "hydra"}):
        problems.append(f"{key}={target!r} is not allowed: no _target_: dlrun never instantiates a class named "
                        "in a config; components come from the registries (model=NAME, optimizer=NAME, ...; "
                        "plugins: see `dlrun list`)")
    _check(cfg, schema.Config, "", None if added is None else set(added), problems)
    if cfg.get("dataset") is None and cfg.get("env") is None:
        problems.append("dataset is missing (a run learns from dataset=NAME, or from an environment: env=NAME); "
                        "it cannot be deleted")
    if problems:  # one problem on one line (a sweep's failure line shows the first line)
        raise DlrunError("invalid config:" + ("\n  " if len(problems) > 1 else " ") + "\n  ".join(problems))

def validate_hydra(hydra_cfg: DictConfig) -> None:
    """Hydra instantiates what `_target_` names in hydra.callbacks, hydra.launcher and hydra.sweeper, and the
    logging classes of hydra.job_logging: only the ones dlrun ships are allowed, so no config runs code."""
    tree = OmegaConf.to_container(hydra_cfg, resolve=False)
    problems = [f"hydra.{key}={target!r}" for key, target in _targets(tree) if target not in HYDRA_TARGETS]
    for part in ("job_logging", "hydra_logging"):
        for key, value in _items(tree.get(part) or {}, f"hydra.{part}"):
            name = key.rsplit(".", 1)[-1]
            if name == "()" or (name == "class" and not str(value).startswith("logging.")):
                problems.append(f"{key}={value!r}")
    if problems:
        raise DlrunError(f"not allowed: {', '.join(problems)}. Hydra would instantiate it, and dlrun lets Hydra "
                         "instantiate only its own callback, launchers and sweepers (a config never runs code).")

def _items(node, path: str):
    """(dotted key, value) of every leaf of a plain config tree."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for k, v in items:
        key = f"{path}.{k}"
        if isinstance(v, (dict, list)):
            yield from _items(v, key)
        else:
            yield key, v
