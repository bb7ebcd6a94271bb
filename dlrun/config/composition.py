"""`compose(overrides)`: the one place a run's config is composed before the run (the CLI, the Python API,
`dlrun summary` and `dlrun predict` call it), with every check. Nothing here imports torch."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable

from omegaconf import DictConfig, OmegaConf

from dlrun import plugins
from dlrun.config.overrides import check_options, first_values, override_key, parse
from dlrun.config.search import CONF_DIR, config_folders, group_options
from dlrun.config.validation import validate, validate_hydra
from dlrun.errors import DlrunError, did_you_mean

def compose(overrides: list[str], config_dirs: Iterable[str] = (), check: bool = True) -> DictConfig:
    """The run config `dlrun OVERRIDES` would use (a sweep's first job), with its `hydra` node, composed once
    from the search path (-cd folders, hydra.searchpath, dlrun's configs, plugins) and, with `check`,
    validated: a mistyped key or option, a bad value or a path for an option is a DlrunError."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import ConfigCompositionException, MissingConfigException

    plugins.register_configs()
    parsed = parse(overrides)
    job, search = first_values(parsed)
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
