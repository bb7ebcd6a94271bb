"""The one exception users see: a message that says what to do, printed without a traceback
(HYDRA_FULL_ERROR=1 shows it)."""
from __future__ import annotations

import difflib
from typing import Iterable


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
