"""The config search path and what each group offers: dlrun's own configs (shipped inside the package as
`dlrun.conf`, the repository's conf/), the `-cd` folders, hydra.searchpath, and plugins. Composition,
every check, every suggestion, `--help` and `dlrun list` read this one list. Nothing here imports torch."""
from __future__ import annotations

import importlib.resources
import re
from pathlib import Path
from typing import Iterable

from dlrun import plugins

CONF_DIR = str(importlib.resources.files("dlrun.conf"))  # the package's own configs (conf/ in the repository)

GROUPS = ("model", "optimizer", "scheduler", "dataset", "env", "trainer", "loss", "logger", "experiment", "debug",
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
    out: dict[str, str] = {}
    for folder in folders if folders is not None else config_folders():
        for path in sorted(Path(folder, group).glob("*.yaml")):
            out.setdefault(path.stem, _first_comment(path))
    for name, desc in plugins.options(group).items():
        out.setdefault(name, desc)
    return dict(sorted(out.items()))

def group_options(group: str, folders: Iterable[Path] | None = None) -> list[str]:
    return list(describe_options(group, folders))
