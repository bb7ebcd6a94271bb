"""Bash completion of dlrun's own commands; Hydra completes the overrides."""
from __future__ import annotations

from dlrun.cli.args import COMMANDS, LIST_NAMES

def complete(line: str) -> tuple[str | None, str]:
    """Bash completion (`dlrun -sc query=bash` with COMP_LINE=LINE): (the words to offer, or None to let Hydra
    complete the overrides, and the line Hydra should then see: a subcommand taking overrides is left out)."""
    program, *words = line.split() or [""]
    current = "" if line.endswith(" ") or not words else words[-1]
    before = words if current == "" else words[:-1]
    if before and before[0] == "list":
        return (" ".join(LIST_NAMES) if len(before) == 1 else ""), line
    if before and before[0] == "report":
        return "", line  # folders: the shell's own file completion (the script's `-o default`)
    if before and before[0] == "summary":
        return None, line.replace(" summary", "", 1)
    if not before and current and "=" not in current:
        matches = [c for c in COMMANDS if c.startswith(current)]
        if matches:
            return " ".join(matches), line
    return None, line
