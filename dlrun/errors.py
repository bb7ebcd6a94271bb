"""The one exception users see: a message that says what to do, printed on one line without a traceback
(HYDRA_FULL_ERROR=1 shows it)."""
from __future__ import annotations

import difflib
import os
import sys
import traceback
from typing import Iterable

TRACEBACKS_ENV = "DLRUN_TRACEBACKS"  # the user's HYDRA_FULL_ERROR, kept while dlrun sets that one for Hydra


class DlrunError(Exception):
    """A user-facing error; `exit_code` is the process exit status the CLI returns."""

    exit_code = 2

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' Did you mean 'x'?' for the closest choices, or '' when nothing is close."""
    choices = list(choices)
    close = difflib.get_close_matches(word, choices, n=3, cutoff=0.5)
    if not close:
        low = {c.lower(): c for c in choices}
        close = [low[c] for c in difflib.get_close_matches(word.lower(), list(low), n=3, cutoff=0.5)]
    if not close:
        return ""
    return " Did you mean " + " or ".join(f"'{c}'" for c in close) + "?"


def tracebacks_wanted() -> bool:
    """Whether the user asked for tracebacks (HYDRA_FULL_ERROR=1 on the command line)."""
    return os.environ.get(TRACEBACKS_ENV, os.environ.get("HYDRA_FULL_ERROR")) == "1"


def print_error(message: str) -> None:
    """`error: MESSAGE` on stderr, in red on a terminal."""
    from rich.console import Console
    from rich.text import Text

    Console(stderr=True, soft_wrap=True).print(Text("error: ", style="bold red") + Text(message))


def print_warning(message: str) -> None:
    """`warning: MESSAGE` on stderr, in yellow on a terminal."""
    from rich.console import Console
    from rich.text import Text

    Console(stderr=True, soft_wrap=True).print(Text("warning: ", style="bold yellow") + Text(message))


def report_error(exc: DlrunError) -> int:
    """Print a user error (with its traceback first when asked for); returns its exit code."""
    if tracebacks_wanted():
        traceback.print_exception(exc, file=sys.stderr)
    print_error(str(exc))
    return exc.exit_code
