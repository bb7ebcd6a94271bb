"""`dlrun list [GROUP] [PATTERN] [-cd DIR]`."""
from __future__ import annotations

from dlrun.cli.args import LIST_NAMES, config_dirs, split_argv
from dlrun.errors import did_you_mean, print_error

def list_command(args: list[str]) -> int:
    """`dlrun list [GROUP] [PATTERN] [-cd DIR]`: each option of each group, as GROUP=OPTION accepts it."""
    import fnmatch

    from dlrun.config.search import GROUPS, config_folders, describe_options

    flags, words = split_argv(args)
    names = {**LIST_NAMES, **{g: g for g in GROUPS}}
    kind = words[0] if words else None
    if kind is not None and kind not in names:
        print_error(f"cannot list '{kind}'.{did_you_mean(kind, LIST_NAMES)} Choose one of: {', '.join(LIST_NAMES)}.")
        return 2
    pattern = (words[1] if len(words) > 1 else "*").lower()
    folders = config_folders(config_dirs(flags))
    groups = [names[kind]] if kind else list(GROUPS)
    for group in groups:
        entries = {n: d for n, d in describe_options(group, folders).items() if fnmatch.fnmatch(n.lower(), pattern)}
        if not kind:
            print(f"{group}:")
        width = max((len(n) for n in entries), default=0)
        for name, desc in entries.items():
            print(f"{'  ' if not kind else ''}{name:<{width}}  {desc}".rstrip())
    return 0
