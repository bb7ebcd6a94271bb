"""Third-party components: packages add models and datasets through the entry-point groups `dlrun.models`
and `dlrun.datasets`, e.g. in their pyproject.toml:

    [project.entry-points."dlrun.models"]
    widenet = "my_package.models:widenet"

Each becomes a config option (`model=widenet`) and a registry entry. Read here from the installed
metadata and the plugin's source text, never by importing it: `dlrun list`, `--help` and the config
checks stay torch-free. A plugin named like a built-in option is ignored, with a warning.
"""
from __future__ import annotations

import ast
import importlib.resources
import importlib.util
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

from dlrun.errors import print_warning

ENTRY_POINT_GROUPS = {"model": "dlrun.models", "dataset": "dlrun.datasets"}
_WARNED: set[tuple[str, str]] = set()


def _builtin(group: str) -> set[str]:
    return {p.stem for p in Path(str(importlib.resources.files("dlrun.conf")), group).glob("*.yaml")}


def entries(group: str) -> dict[str, EntryPoint]:
    """name -> entry point of the plugins for a config group (model, dataset); clashes are warned about once."""
    if group not in ENTRY_POINT_GROUPS:
        return {}
    builtin, out = _builtin(group), {}
    for ep in entry_points(group=ENTRY_POINT_GROUPS[group]):
        name = ep.name.lower()
        if name in builtin:
            if (group, name) not in _WARNED:
                _WARNED.add((group, name))
                print_warning(f"ignoring the {group} plugin '{ep.name}' ({ep.value}, from {_dist(ep)}): dlrun has a "
                              f"built-in {group} of that name. Give the entry point another name.")
            continue
        out.setdefault(name, ep)
    return out


def _dist(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return dist.name if dist else "an unknown distribution"


def description(ep: EntryPoint) -> str:
    """The first docstring line of the plugin's function or class, read from its source file (not imported);
    'plugin from DIST' when the source cannot be read."""
    module, _, attr = ep.value.partition(":")
    fallback = f"plugin from {_dist(ep)}"
    try:
        top, *rest = module.split(".")
        spec = importlib.util.find_spec(top)  # a top-level name: found, not imported
        if spec is None:
            return fallback
        if spec.submodule_search_locations:
            base = Path(next(iter(spec.submodule_search_locations)), *rest)
            path = base / "__init__.py" if base.is_dir() else base.with_suffix(".py")
        else:
            path = Path(spec.origin)
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, SyntaxError, ImportError):
        return fallback
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name == attr.split(".")[0]:
            doc = (ast.get_docstring(node) or "").strip().splitlines()
            return doc[0] if doc else fallback
    return fallback


def options(group: str) -> dict[str, str]:
    """name -> description of the plugins' config options in `group`."""
    return {name: description(ep) for name, ep in entries(group).items()}


def register_configs() -> None:
    """Give each plugin model/dataset a config option of its own, so `model=NAME` works for plugins.

    Extra arguments go in with `+model.KEY=VALUE`; the plugin's own defaults apply otherwise.
    """
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    for group in ENTRY_POINT_GROUPS:
        for name in entries(group):
            node = {"name": name} if group == "model" else {"name": name, "in_memory": True, "num_workers": 0,
                                                             "augment": []}
            cs.store(group=group, name=name, node=node)
