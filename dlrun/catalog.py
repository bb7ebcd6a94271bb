"""`dlrun list`: what is registered, read from the source without importing torch.

Importing the model modules costs ~4 s here (torch); `list` and shell completion should not.
The built-in modules are parsed with `ast` for their `@register_*("name")` decorators and
docstrings; plugins are read from entry-point metadata. A test checks this equals the live registry.
"""
from __future__ import annotations

import ast
from importlib.metadata import entry_points
from pathlib import Path

from dlrun.registry import REGISTRIES

BUILTIN = {kind: (f"register_{reg.kind}", reg.builtin_modules, reg.entry_point_group)
           for kind, reg in REGISTRIES.items()}  # registry.py imports no torch, so this is free


def _module_path(module: str) -> Path:
    return Path(__file__).resolve().parent.joinpath(*module.split(".")[1:]).with_suffix(".py")


def _registrations(tree: ast.Module, decorator: str):
    """(name, description) for `@decorator("name")` on defs and `decorator("name", "desc")(obj)` calls."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            for dec in node.decorator_list:
                if isinstance(dec, ast.Call) and getattr(dec.func, "id", None) == decorator:
                    doc = (ast.get_docstring(node) or "").strip().splitlines()
                    desc = dec.args[1].value if len(dec.args) > 1 else (doc[0] if doc else "")
                    yield dec.args[0].value, desc
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Call):
            inner = node.func
            if getattr(inner.func, "id", None) == decorator:
                yield inner.args[0].value, inner.args[1].value if len(inner.args) > 1 else ""


def catalog(kind: str) -> dict[str, str]:
    """name -> one-line description for `kind` in BUILTIN, plugins included."""
    decorator, modules, group = BUILTIN[kind]
    out: dict[str, str] = {}
    for mod in modules:
        tree = ast.parse(_module_path(mod).read_text())
        out.update({name.lower(): desc for name, desc in _registrations(tree, decorator)})
    if group:
        for ep in entry_points(group=group):
            dist = getattr(ep, "dist", None)
            out.setdefault(ep.name.lower(), f"plugin from {dist.name if dist else ep.value}")
    return dict(sorted(out.items()))


def plugin_entry_points(group: str) -> list[str]:
    return [ep.name.lower() for ep in entry_points(group=group)]



