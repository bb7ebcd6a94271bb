"""Characters of a text file, for next-character prediction (a character language model).

The text is read whole, its characters become the vocabulary, and it is cut into consecutive windows of
`length + 1` characters: the input is a window's first `length`, the target the same shifted by one.
Train, validation and test are consecutive stretches of the text (not shuffled windows), so no test
window overlaps a training one. The default file ships with every Debian system (base-files).
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

import torch

from dlrun.data.bundle import DataBundle, Split
from dlrun.errors import DlrunError
from dlrun.registry import register_dataset

DEFAULT_TEXT = "/usr/share/common-licenses/GPL-3"


def read_text(path: str, max_mb: float = 50) -> str:
    """The whole UTF-8 file. Only a regular file of at most `max_mb` megabytes is read: a device
    (/dev/zero), a pipe or a huge file would never end or fill the memory. Anything else is a clear error."""
    file = Path(os.path.expanduser(str(path)))
    try:
        info = file.stat()
        if not stat.S_ISREG(info.st_mode):
            raise DlrunError(f"dataset.path={path} is not a regular file (a device, a pipe or a folder); give a "
                             "UTF-8 text file with dataset.path=FILE.")
        if info.st_size > max_mb * 1e6:
            raise DlrunError(f"dataset.path={path} has {info.st_size / 1e6:.1f} MB, over dataset.max_mb={max_mb:g}; "
                             "the text is held in memory whole. Raise dataset.max_mb if this is the file you meant.")
        return file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DlrunError(f"cannot read the text file {file} ({exc}). Give a UTF-8 text file with "
                         "dataset.path=FILE.") from None


@register_dataset("text")
def text(path: str = DEFAULT_TEXT, length: int = 64, val_split: float = 0.1, test_split: float = 0.1,
         lowercase: bool = False, max_mb: float = 50) -> DataBundle:
    """Characters of a text file (default: the GPL-3 text every Debian system has), next-character targets."""
    content = read_text(path, max_mb)
    if lowercase:
        content = content.lower()
    vocab = sorted(set(content))
    lookup = {c: i for i, c in enumerate(vocab)}
    codes = torch.tensor([lookup[c] for c in content], dtype=torch.long)
    n_windows = (len(codes) - 1) // (length + 1)
    n_test, n_val = round(n_windows * test_split), round(n_windows * val_split)
    if length < 1 or n_windows - n_test - n_val < 1 or n_val < 1 or n_test < 1:
        raise DlrunError(f"{path} has {len(codes)} characters: too few for windows of dataset.length={length} "
                         "in three splits; use a longer text or a smaller dataset.length.")
    windows = codes[: n_windows * (length + 1)].view(n_windows, length + 1)
    x, y = windows[:, :-1], windows[:, 1:]
    cut1, cut2 = n_windows - n_test - n_val, n_windows - n_test
    return DataBundle(Split(x[:cut1], y[:cut1]), Split(x[cut1:cut2], y[cut1:cut2]), Split(x[cut2:], y[cut2:]),
                      input_shape=(length,), num_outputs=len(vocab), task="next_token", classes=vocab, tokens=True)
