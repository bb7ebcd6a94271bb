"""Config checks that run before anything heavy: typos with suggestions, types and ranges, the search path.

`compose(overrides)` is the one place a config is composed before a run (the CLI, the Python API and
`dlrun summary` call it); `config_folders` is the one search path (built-in, -cd folders, hydra.searchpath)
that composition, every check, every suggestion, `--help` and `dlrun list` read. Nothing here imports torch.
"""
from __future__ import annotations

import dataclasses
import importlib.resources
import re
import types
import typing
from pathlib import Path
from typing import Iterable

from omegaconf import DictConfig, ListConfig, OmegaConf

from dlrun import schema
from dlrun import sweep as _sweep  # noqa: F401  registers ${dlrun_job_dir:}, hydra.sweep.subdir's resolver
from dlrun.errors import DlrunError, did_you_mean

CONF_DIR = str(importlib.resources.files("dlrun.conf"))  # the package's own configs (conf/ in the repository)
GROUPS = ("model", "optimizer", "scheduler", "dataset", "trainer", "loss", "logger", "experiment", "debug",
          "hparams_search")
OPTION_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")  # a file name in a group folder, never a path


def config_folders(config_dirs: Iterable[str] = (), searchpath: Iterable[str] = ()) -> list[Path]:
    """The config search path: the -cd folders, the hydra.searchpath entries (file:// or pkg://), then
    dlrun's own configs. Folders that do not exist are left out."""
    folders = [Path(d).expanduser() for d in config_dirs]
    for entry in searchpath:
        entry = str(entry)
        if entry.startswith("pkg://"):
            try:
                folders.append(Path(str(importlib.resources.files(entry[6:].strip("/").replace("/", ".")))))
            except (ImportError, TypeError):
                continue
        else:
            folders.append(Path(entry.removeprefix("file://")).expanduser())
    folders.append(Path(CONF_DIR))
    return [f.resolve() for f in dict.fromkeys(folders) if f.is_dir()]


def _first_comment(path: Path) -> str:
    """The first comment line of a YAML file that is not a Hydra directive (`# @package ...`)."""
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                text = line.strip()
                if not text.startswith("#"):
                    break
                text = text.lstrip("#").strip()
                if text and not text.startswith("@"):
                    return text
    except OSError:
        pass
    return ""


def describe_options(group: str, folders: Iterable[Path] | None = None) -> dict[str, str]:
    """option -> its one-line description, for every option `GROUP=OPTION` accepts: the YAML files of the
    group in the search path (earlier folders win) and the options plugins register (model, dataset)."""
    from dlrun import plugins

    out: dict[str, str] = {}
    for folder in folders if folders is not None else config_folders():
        for path in sorted(Path(folder, group).glob("*.yaml")):
            out.setdefault(path.stem, _first_comment(path))
    for name, desc in plugins.options(group).items():
        out.setdefault(name, desc)
    return dict(sorted(out.items()))


def group_options(group: str, folders: Iterable[Path] | None = None) -> list[str]:
    return list(describe_options(group, folders))


# ---- value checks against the schemas (dlrun/schema.py), applied to the composed config -----------
ALLOWED_TARGETS: frozenset[str] = frozenset()  # dlrun instantiates nothing named in a config: components come
# from the registries (model=NAME, optimizer=NAME, ...)
HYDRA_TARGETS = frozenset({  # what Hydra itself may instantiate: dlrun's callback, the launchers and sweepers it ships
    "dlrun.sweep.SweepDirCallback",
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
    for key, target in _targets({k: v for k, v in OmegaConf.to_container(cfg, resolve=False).items() if k != "hydra"}):
        if target not in ALLOWED_TARGETS:
            problems.append(f"{key}={target!r} is not allowed: no _target_: dlrun never instantiates a class named "
                            "in a config; components come from the registries (model=NAME, optimizer=NAME, ...; "
                            "plugins: see `dlrun list`)")
    _check(cfg, schema.Config, "", None if added is None else set(added), problems)
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


# ---- command-line overrides: composition and early typo detection -----------------------------------
def override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def quote(value: str) -> str:
    """A value as a Hydra override writes it: plain when the grammar allows, else single-quoted and escaped
    (spaces, quotes, non-ASCII letters, `${`)."""
    if re.fullmatch(r"[A-Za-z0-9_./:-]+", value) and not value.startswith("-"):
        return value
    value = re.sub(r"(\\+)(?='|$)", lambda m: m.group(1) * 2, value)  # Hydra unescapes only these backslashes
    return "'" + value.replace("'", "\\'").replace("${", "\\${") + "'"


def guard_run_dir(overrides: list[str]) -> None:
    """Refuse to start a new run in a folder that already holds one (it would be overwritten)."""
    if any(override_key(o) == "resume" for o in overrides):
        return
    for o in overrides:
        if override_key(o) == "hydra.run.dir":
            run_dir = Path(override_value(o))
            from dlrun import run_folder

            run_folder.check_name(run_dir)
            if (run_dir / "summary.json").exists() or (run_dir / "checkpoints").exists():
                raise DlrunError(f"{run_dir} already holds a run; nothing was changed. Continue it with "
                                 f"`dlrun {shell_quote(f'resume={run_dir}')}`, or choose another hydra.run.dir.")


def shell_quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)


def override_value(override: str):
    """The value of a KEY=VALUE override as Hydra parses it (quotes and escapes undone)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        return OverridesParser.create().parse_override(override).value()
    except Exception:
        return override.split("=", 1)[1]


def requote(overrides: list[str]) -> list[str]:
    """KEY=VALUE overrides whose plain value Hydra's grammar cannot read (a path with spaces, quotes or letters
    outside ASCII: `hydra.run.dir=/data/ünï run`) quoted for it; everything else as given."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser, out = OverridesParser.create(), []
    for o in overrides:
        key, eq, value = o.partition("=")
        if eq and value and value[0] not in "'\"" and not set("[]{}(),") & set(value):
            try:
                parser.parse_override(o)
            except Exception:
                o = f"{key}={quote(value)}"
        out.append(o)
    return out


def parse(overrides: list[str]) -> list:
    """Hydra's parsed overrides; a syntax error is a DlrunError naming the override."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    out = []
    for o in overrides:
        try:
            out.extend(parser.parse_overrides([o]))
        except OverrideParseException as exc:
            first = str(exc).splitlines()[0] if str(exc) else ""
            raise DlrunError(f"cannot parse the override {o!r}: {first}. Write KEY=VALUE or GROUP=OPTION; quote "
                             "values with spaces or other letters: KEY='a value'.") from None
    return out


def check_options(parsed: list, folders: list[Path], strict: bool = False) -> None:
    """A GROUP=OPTION names a config file of the group by name, never a path (`experiment=../x` would load any
    YAML file). `strict` (a run folder's saved overrides): the option must also exist in the search path."""
    for o in parsed:
        group = o.key_or_group
        if group not in GROUPS and not group.startswith("hydra/"):
            continue
        values = [o.value()] if not o.is_sweep_override() else list(o.sweep_string_iterator())
        for value in values:
            if value is None and o.is_delete():
                continue
            if not isinstance(value, str) or not OPTION_NAME.match(value) or ".." in value:
                raise DlrunError(f"{group}={value}: an option is the name of a file in conf/{group}/ (or in a "
                                 "-cd folder), never a path. To use your own config file, put it in a folder "
                                 f"DIR/{group}/ and add `-cd DIR`.")
            if strict and not group.startswith("hydra/") and value not in group_options(group, folders):
                raise DlrunError(f"{group}={value} is not an option of the config search path"
                                 f"{did_you_mean(value, group_options(group, folders))}")


def _first_values(parsed: list) -> tuple[list[str], list[str]]:
    """One job's worth of overrides (the first value of each sweep) and the hydra.searchpath entries."""
    out, search = [], []
    for o in parsed:
        key = o.get_key_element()
        if key == "hydra.searchpath" and isinstance(o.value(), list):
            search += [str(p) for p in o.value()]
        if o.is_sweep_override():
            try:
                first = next(iter(o.sweep_string_iterator()))
            except Exception:  # e.g. glob(): leave it to Hydra
                continue
            out.append(f"{key}={first}")  # as written in the sweep (a list stays a list)
        else:
            out.append(o.input_line)
    return out, search


def compose(overrides: list[str], config_dirs: Iterable[str] = (), check: bool = True) -> DictConfig:
    """The run config `dlrun OVERRIDES` would use (a sweep's first job), with its `hydra` node, composed once
    from the search path (-cd folders, hydra.searchpath, dlrun's configs, plugins) and, with `check`,
    validated: a mistyped key or option, a bad value or a path for an option is a DlrunError."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import ConfigCompositionException, MissingConfigException

    from dlrun import plugins

    plugins.register_configs()
    parsed = parse(overrides)
    job, search = _first_values(parsed)
    folders = config_folders(config_dirs, search)
    check_options(parsed, folders)
    extra = [f"file://{Path(d).expanduser().resolve()}" for d in config_dirs]
    if extra:
        job = [o for o in job if override_key(o) != "hydra.searchpath"]
        job.append(f"hydra.searchpath=[{','.join(repr(p) for p in extra + search)}]")
    GlobalHydra.instance().clear()  # a CLI run has not initialised Hydra yet; an API caller may have
    with initialize_config_dir(CONF_DIR, version_base="1.3", job_name="dlrun"):
        try:
            cfg = hydra_compose("config", overrides=job, return_hydra_config=True)
        except MissingConfigException as exc:
            raise DlrunError(_explain_missing(str(exc), folders)) from None
        except ConfigCompositionException as exc:
            cause = exc.__cause__ or exc
            msg = _explain_key(str(cause), job, hydra_compose) or str(exc) or f"{type(cause).__name__}: {cause}"
            raise DlrunError(f"the config could not be composed: {msg}" if msg == str(exc) else msg) from None
        except Exception as exc:  # e.g. a YAML file that does not parse, or asks for a Python object
            raise DlrunError(f"the config could not be composed: {type(exc).__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
    if check:
        validate(cfg, added={override_key(o) for o in job if o.startswith("+")})
        validate_hydra(cfg.hydra)
    return cfg


def check_overrides(overrides: list[str], config_dirs: Iterable[str] = ()) -> None:
    """Compose once (no torch) so a mistyped key or option, or a bad value, is refused before any work."""
    compose(overrides, config_dirs)


def _explain_missing(msg: str, folders: list[Path]) -> str:
    m = re.search(r"Could not find '([^']+)/([^'/]+)'", msg)
    if not m:
        return msg.splitlines()[0] if msg else msg
    group, name = m.groups()
    options = group_options(group, folders)
    return (f"unknown {group} '{name}'.{did_you_mean(name, options)}\n"
            f"Available {group} options: {', '.join(options)}")


def _explain_key(msg: str, job: list[str], compose) -> str | None:
    m = re.search(r"full_key: (\S+)", msg)
    if not m or "not in struct" not in msg:
        return None
    full_key = m.group(1)
    parent_key, _, leaf = full_key.rpartition(".")
    rest = [o for o in job if override_key(o) != full_key]
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
