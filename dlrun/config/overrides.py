"""Command-line overrides as Hydra reads them: parsing, quoting, and the rule that a group option is a name."""
from __future__ import annotations

import re
from pathlib import Path

from dlrun.config.search import GROUPS, OPTION_NAME, group_options
from dlrun.errors import DlrunError, did_you_mean

# ---- command-line overrides: composition and early typo detection -----------------------------------
def override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")

def is_hydra_override(override: str) -> bool:
    """Hydra's own settings: `hydra.KEY=...`, `hydra/GROUP=...`, also with `+`/`~`; never a run's config."""
    key = override_key(override)
    return key == "hydra" or key.startswith(("hydra.", "hydra/"))


def override_value(override: str):
    """The value of a KEY=VALUE override as Hydra parses it (quotes and escapes undone)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        return OverridesParser.create().parse_override(override).value()
    except Exception:
        return override.split("=", 1)[1]

def quote(value: str) -> str:
    """A value as a Hydra override writes it: plain when the grammar allows, else single-quoted and escaped
    (spaces, quotes, non-ASCII letters, `${`)."""
    if re.fullmatch(r"[A-Za-z0-9_./:-]+", value) and not value.startswith("-"):
        return value
    value = re.sub(r"(\\+)(?='|$)", lambda m: m.group(1) * 2, value)  # Hydra unescapes only these backslashes
    return "'" + value.replace("'", "\\'").replace("${", "\\${") + "'"

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

def first_values(parsed: list) -> tuple[list[str], list[str]]:
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


def run_dir_of(overrides: list[str]) -> Path | None:
    """The folder `hydra.run.dir=DIR` names, if an override does."""
    dirs = [override_value(o) for o in overrides if override_key(o) == "hydra.run.dir"]
    return Path(str(dirs[-1])) if dirs else None
