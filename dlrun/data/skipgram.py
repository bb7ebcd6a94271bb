"""Skip-gram pairs with negative sampling (Mikolov et al. 2013) from the words of a text file, for word2vec.

Every word and each word within `window` of it make a positive pair (label 1); for each positive pair,
`negatives` pairs of the same centre word with words drawn from the unigram distribution raised to 3/4
make the negative ones (label 0). Training the pairs with a sigmoid and binary cross-entropy is the
skip-gram negative-sampling objective; here the negatives are drawn once, when the data is built, rather
than anew each epoch. Train, validation and test pairs come from consecutive stretches of the text.
"""
from __future__ import annotations

import re
from collections import Counter

import torch

from dlrun.data.bundle import DataBundle, Split
from dlrun.data.text import DEFAULT_TEXT, read_text
from dlrun.errors import DlrunError
from dlrun.registry import register_dataset

WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


def words_of(content: str) -> list[str]:
    """Lower-case words (letters, with an inner apostrophe kept: "don't")."""
    return WORD.findall(content.lower())


def pairs(ids: torch.Tensor, window: int, negatives: int, noise: torch.Tensor, g: torch.Generator):
    """(centre, context) pairs within `window`, then `negatives` noise pairs per positive; labels 1 and 0."""
    centre, context = [], []
    for offset in range(1, window + 1):
        centre += [ids[:-offset], ids[offset:]]  # the context `offset` words after, and before
        context += [ids[offset:], ids[:-offset]]
    centre, context = torch.cat(centre), torch.cat(context)
    neg_centre = centre.repeat_interleave(negatives)
    neg_context = torch.multinomial(noise, len(neg_centre), replacement=True, generator=g)
    x = torch.cat([torch.stack([centre, context], 1), torch.stack([neg_centre, neg_context], 1)])
    y = torch.cat([torch.ones(len(centre)), torch.zeros(len(neg_centre))]).unsqueeze(1)
    return x, y


@register_dataset("skipgram")
def skipgram(path: str = DEFAULT_TEXT, window: int = 2, negatives: int = 4, min_count: int = 2,
             val_split: float = 0.1, test_split: float = 0.1, split_seed: int = 0, max_mb: float = 50) -> DataBundle:
    """Skip-gram pairs with negative sampling from a text file's words (word2vec's training data)."""
    words = words_of(read_text(path, max_mb))
    counts = Counter(words)
    vocab = [w for w, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if c >= min_count]
    if len(vocab) < 2 or window < 1 or negatives < 1:
        raise DlrunError(f"dataset=skipgram needs at least 2 words seen dataset.min_count={min_count} times "
                         f"(found {len(vocab)}), window >= 1 and negatives >= 1.")
    index = {w: i for i, w in enumerate(vocab)}  # the most frequent word first
    ids = torch.tensor([index[w] for w in words if w in index], dtype=torch.long)
    freq = torch.tensor([counts[w] for w in vocab], dtype=torch.float64)
    noise = freq ** 0.75 / (freq ** 0.75).sum()  # Mikolov et al.'s noise distribution
    g = torch.Generator().manual_seed(split_seed)
    cut1, cut2 = round(len(ids) * (1 - val_split - test_split)), round(len(ids) * (1 - test_split))
    splits = [pairs(part, window, negatives, noise, g) for part in (ids[:cut1], ids[cut1:cut2], ids[cut2:])]
    if any(len(x) == 0 for x, _ in splits):
        raise DlrunError(f"the text has {len(ids)} known words: too few for three splits with window={window}.")
    return DataBundle(*(Split(x, y) for x, y in splits), input_shape=(2,), num_outputs=1, task="binary",
                      tokens=True, vocab=vocab)
