"""One registry per kind of component (models, datasets, optimizers, ...), timm-style.

    @register_model("cnn")
    def cnn(input_shape, num_classes, ...): ...

    create_model("CNN", input_shape=(1, 8, 8), num_classes=10)
    list_models("res*")

Names are case-insensitive. The built-in entries are found by importing every module of their package
(dlrun/models/, dlrun/data/): a new model is one file with a `@register_model` and one YAML file.
Third-party packages add entries through the entry-point groups `dlrun.models` and `dlrun.datasets`
(dlrun/plugins.py); a plugin that fails to import is skipped with a warning.
"""
from __future__ import annotations

import fnmatch
import importlib
import pkgutil
import warnings
from dataclasses import dataclass
from typing import Any, Callable

from dlrun.errors import DlrunError, did_you_mean


@dataclass
class Entry:
    name: str
    fn: Callable[..., Any]
    description: str
    source: str  # "dlrun" or the plugin's distribution name


class Registry:
    """A name -> builder table with case-insensitive lookup, wildcards and plugins."""

    def __init__(self, kind: str, builtin: str | None = None):
        self.kind = kind
        self.builtin = builtin  # a package whose every module is imported (a new file is found), or one module
        self._entries: dict[str, Entry] = {}
        self._loaded = False

    def register(self, name: str, description: str | None = None, source: str = "dlrun"):
        """Decorator that registers `fn` under `name` (the first docstring line describes it)."""

        def deco(fn):
            key = name.lower()
            if key in self._entries and self._entries[key].fn is not fn:
                raise DlrunError(f"{self.kind} '{name}' is registered twice "
                                 f"({self._entries[key].source} and {source})")
            desc = description or next(iter((fn.__doc__ or "").strip().splitlines()), "")
            self._entries[key] = Entry(key, fn, desc, source)
            return fn

        return deco

    def _load(self) -> None:
        """Import the built-in modules (they register on import), then the plugins."""
        if self._loaded:
            return
        self._loaded = True
        top = importlib.import_module(self.builtin) if self.builtin else None
        for info in pkgutil.iter_modules(getattr(top, "__path__", [])):
            importlib.import_module(f"{self.builtin}.{info.name}")
        from dlrun import plugins

        for ep in plugins.entries(self.kind).values():  # {} for kinds no plugin adds; name clashes warned there
            if ep.name.lower() in self._entries:
                continue
            try:
                fn = ep.load()
            except Exception as exc:  # a broken plugin must never break dlrun
                warnings.warn(f"skipping {self.kind} plugin '{ep.name}' ({ep.value}): "
                              f"{type(exc).__name__}: {exc}", stacklevel=2)
                continue
            dist = getattr(ep, "dist", None)
            self.register(ep.name, source=dist.name if dist else ep.value)(fn)

    def names(self, pattern: str = "*") -> list[str]:
        self._load()
        return sorted(n for n in self._entries if fnmatch.fnmatch(n, pattern.lower()))

    def entry(self, name: str) -> Entry:
        self._load()
        key = str(name).lower()
        if key not in self._entries:
            raise DlrunError(f"unknown {self.kind} '{name}'.{did_you_mean(key, self._entries)}\n"
                             f"Available {self.kind}s: {', '.join(sorted(self._entries))}")
        return self._entries[key]

    def get(self, name: str) -> Callable[..., Any]:
        return self.entry(name).fn

    def __contains__(self, name: str) -> bool:
        self._load()
        return str(name).lower() in self._entries


MODELS = Registry("model", "dlrun.models")
DATASETS = Registry("dataset", "dlrun.data")
OPTIMIZERS = Registry("optimizer", "dlrun.train.optim")
SCHEDULERS = Registry("scheduler", "dlrun.train.optim")
LOGGERS = Registry("logger", "dlrun.train.loggers")
TASKS = Registry("task", "dlrun.tasks")

register_model = MODELS.register
register_dataset = DATASETS.register
register_optimizer = OPTIMIZERS.register
register_scheduler = SCHEDULERS.register
register_logger = LOGGERS.register
REGISTRIES = {"models": MODELS, "datasets": DATASETS, "optimizers": OPTIMIZERS,
              "schedulers": SCHEDULERS, "loggers": LOGGERS, "tasks": TASKS}


def create_model(name: str, **kwargs):
    """Build a registered model by name; bad keyword arguments become a clear error."""
    fn = MODELS.get(name)
    try:
        return fn(**kwargs)
    except (TypeError, ValueError) as exc:  # a missing or mistyped argument, e.g. model.hidden=[a,b]
        raise DlrunError(f"model '{name}' could not be built: {exc}") from exc


def list_models(pattern: str = "*") -> list[str]:
    return MODELS.names(pattern)
