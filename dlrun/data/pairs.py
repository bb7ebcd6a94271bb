"""(source, target) pairs of token sequences, for sequence to sequence (task=seq2seq, model=seq2seq).

Pairs come from a generator (`source=reverse|sort|dates|numbers`), a TSV/CSV file (`source=file`) or Debian's
English-Spanish FreeDict dictionary (`source=freedict`). Text becomes characters or words (`tokens=char|word`, and
`target_tokens` for the target when it differs, e.g. number words to digits);
each side gets a vocabulary built on the training split, after the four special tokens below (an unseen token
becomes <unk>, counted). A pair is stored as x = (2, L) token ids, row 0 the source and row 1 the target shifted
right behind <s> (the decoder's input under teacher forcing), and y = the target followed by </s>; <pad> fills
the rest. L = max(max_source, max_target + 1). Pairs longer than the maximum lengths are cut (counted in the log)
or refused (`overflow=error`).
"""
from __future__ import annotations

import csv
import datetime
import gzip
import io
import random
import re
from collections import Counter
from pathlib import Path

import torch

from dlrun.data.bundle import DataBundle, Split
from dlrun.data.text import read_text
from dlrun.errors import DlrunError
from dlrun.registry import register_dataset

SPECIALS = ("<pad>", "<s>", "</s>", "<unk>")
PAD, BOS, EOS, UNK = range(4)
FREEDICT = "/usr/share/dictd/freedict-eng-spa.dict.dz"  # Debian's dict-freedict-eng-spa
GENERATED = ("reverse", "sort", "dates", "numbers")
SOURCES = (*GENERATED, "file", "freedict")
LETTERS = "abcdefghijklmnopqrstuvwxyz"
MONTHS = ("enero febrero marzo abril mayo junio julio agosto septiembre octubre noviembre diciembre").split()
UNITS = ("cero uno dos tres cuatro cinco seis siete ocho nueve diez once doce trece catorce quince dieciséis "
         "diecisiete dieciocho diecinueve veinte veintiuno veintidós veintitrés veinticuatro veinticinco veintiséis "
         "veintisiete veintiocho veintinueve").split()
TENS = "_ _ _ treinta cuarenta cincuenta sesenta setenta ochenta noventa".split()
HUNDREDS = ("_ ciento doscientos trescientos cuatrocientos quinientos seiscientos setecientos ochocientos "
            "novecientos").split()


# ---- tokens --------------------------------------------------------------------------------------
def tokenize(text: str, kind: str) -> list[str]:
    """Characters, or words (runs of letters and digits, and each punctuation mark on its own)."""
    return list(text) if kind == "char" else re.findall(r"\w+|[^\w\s]", text)


def detokenize(tokens: list[str], kind: str) -> str:
    return ("" if kind == "char" else " ").join(tokens)


def strip_ids(ids: list[int]) -> list[int]:
    """A decoded or reference row up to its </s>, padding left out."""
    out = []
    for i in ids:
        if i == EOS:
            break
        if i != PAD:
            out.append(i)
    return out


def encode_source(text: str, meta: dict) -> tuple[torch.Tensor, int, int]:
    """New source text as one raw input (1, 2, L) for a model trained on `meta`'s pairs (`dlrun predict --text`):
    (input, tokens that became <unk>, tokens cut off beyond the maximum source length)."""
    how = meta["text"]
    tokens = tokenize(text.lower() if how["lowercase"] else text, how["tokens"])
    if not tokens:
        raise DlrunError("the text to translate is empty.")
    lookup = {t: i for i, t in enumerate(meta["vocab"])}
    ids = [lookup.get(t, UNK) for t in tokens]
    cut = max(0, len(ids) - how["max_source"])
    x = torch.full((1, *meta["input_shape"]), PAD, dtype=torch.long)
    x[0, 0, :len(ids) - cut] = torch.tensor(ids[:len(ids) - cut])
    return x, sum(i == UNK for i in ids), cut


# ---- generated pairs -------------------------------------------------------------------------------
def spanish_number(n: int) -> str:
    """0 <= n < 1,000,000 in Spanish words: 1234 -> 'mil doscientos treinta y cuatro', 21000 -> 'veintiún mil'."""
    def below_thousand(k: int, before_mil: bool = False) -> str:
        words = []
        if k >= 100:
            words.append("cien" if k == 100 else HUNDREDS[k // 100])
            k %= 100
        if k:
            if k < 30:
                words.append(UNITS[k])
            else:
                words.append(TENS[k // 10] + (f" y {UNITS[k % 10]}" if k % 10 else ""))
        text = " ".join(words)
        if before_mil:  # 'uno' shortens before a noun: veintiún mil, treinta y un mil
            text = re.sub(r"veintiuno$", "veintiún", re.sub(r"\buno$", "un", text))
        return text

    if n < 1000:
        return below_thousand(n) if n else "cero"
    thousands, rest = divmod(n, 1000)
    head = "mil" if thousands == 1 else below_thousand(thousands, before_mil=True) + " mil"
    return head + (" " + below_thousand(rest) if rest else "")


def generated(source: str, n: int, length: int, min_length: int | None, symbols: int, seed: int) -> list[tuple[str, str]]:
    """`n` distinct pairs of a generated task, drawn with `seed`."""
    rng = random.Random(seed)
    if source == "dates":  # distinct days of 1900-2099
        first, days = datetime.date(1900, 1, 1), 73049
        picked = rng.sample(range(days), min(n, days))
        dates = [first + datetime.timedelta(d) for d in picked]
        return [(f"{d.day} de {MONTHS[d.month - 1]} de {d.year}", d.isoformat()) for d in dates]
    if source == "numbers":
        return [(spanish_number(k), str(k)) for k in rng.sample(range(1_000_000), min(n, 1_000_000))]
    if not 2 <= symbols <= len(LETTERS):
        raise DlrunError(f"dataset.symbols={symbols}: give 2 to {len(LETTERS)} symbols (letters) for source={source}.")
    low = length if min_length is None else min_length
    if not 1 <= low <= length:
        raise DlrunError(f"dataset.min_length={min_length} must be between 1 and dataset.length={length}.")
    seen: dict[str, None] = {}
    for _ in range(20 * n):
        seen[''.join(rng.choice(LETTERS[:symbols]) for _ in range(rng.randint(low, length)))] = None
        if len(seen) == n:
            break
    return [(s, s[::-1] if source == "reverse" else "".join(sorted(s))) for s in seen]


# ---- pairs from files ----------------------------------------------------------------------------
def read_file(path: str, separator: str | None, max_mb: float) -> tuple[list[tuple[str, str]], int]:
    """(source, target) from the first two columns of each line; (pairs, empty lines or sides skipped)."""
    if not path:
        raise DlrunError("dataset.source=file reads dataset.path=FILE (a TSV or CSV of source, target pairs).")
    text = read_text(path, max_mb)
    sep = separator or ("," if path.lower().endswith(".csv") else "\t")
    pairs, empty = [], 0
    for number, row in enumerate(csv.reader(io.StringIO(text), delimiter=sep), start=1):
        if not any(cell.strip() for cell in row):
            empty += 1
            continue
        if len(row) < 2:
            raise DlrunError(f"{path}, line {number}: no {sep!r} separator between a source and a target; give "
                             "one pair per line (dataset.separator sets the separator).")
        src, tgt = row[0].strip(), row[1].strip()
        if not src or not tgt:
            empty += 1
            continue
        pairs.append((src, tgt))
    return pairs, empty


def read_freedict(path: str | None) -> tuple[list[tuple[str, str]], int]:
    """FreeDict dictionary entries (dictd format: .dict.dz and its .index) as (headword, first word of the first
    sense); (pairs, entries skipped because their headword has several entries: one reference could not be right)."""
    path = path or FREEDICT
    index = Path(path.removesuffix(".dz").removesuffix(".dict") + ".index")
    if not Path(path).is_file() or not index.is_file():
        raise DlrunError(f"dataset.source=freedict reads {path} and {index.name}; they are missing (Debian: apt-get "
                         "install dict-freedict-eng-spa), or give dataset.path=FILE.dict.dz.")
    with gzip.open(path, "rb") as f:  # dictzip is gzip
        body = f.read()
    entries: dict[str, list[str]] = {}
    for line in index.read_text(encoding="utf-8").splitlines():
        word, offset, size = line.split("\t")
        start, size = b64(offset), b64(size)
        lines = [s.strip() for s in body[start:start + size].decode("utf-8").splitlines() if s.strip()]
        if word.startswith("00database") or len(lines) < 2:
            continue
        source = re.sub(r"\s*/[^/]*/\s*$", "", lines[0])  # the headword without its pronunciation
        target = re.sub(r"^\d+\.\s*", "", lines[1]).split(",")[0].strip()  # the first sense's first word
        if source and target:
            entries.setdefault(source, []).append(target)
    pairs = [(s, t[0]) for s, t in entries.items() if len(set(t)) == 1]
    return pairs, sum(len(t) for t in entries.values() if len(set(t)) > 1)


def b64(text: str) -> int:
    """dictd's index numbers: base 64 digits A-Z a-z 0-9 + /."""
    digits = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    value = 0
    for c in text:
        value = value * 64 + digits.index(c)
    return value


# ---- the dataset ---------------------------------------------------------------------------------
def fit_length(seqs: list[list[str]], limit: int | None, side: str, overflow: str, where: str) -> tuple[int, int]:
    """(the maximum length, how many sequences are longer): the longest when `limit` is null."""
    longest = max(len(s) for s in seqs)
    if limit is None:
        return longest, 0
    over = [i for i, s in enumerate(seqs) if len(s) > limit]
    if over and overflow == "error":
        raise DlrunError(f"{where}: pair {over[0] + 1} has a {side} of {len(seqs[over[0]])} tokens, over "
                         f"dataset.max_{side}={limit} ({len(over)} pair(s) are); raise dataset.max_{side} or set "
                         "dataset.overflow=truncate.")
    return limit, len(over)


def vocabulary(seqs: list[list[str]], min_count: int) -> list[str]:
    """The special tokens, then every token seen at least `min_count` times, sorted."""
    counts = Counter(t for s in seqs for t in s)
    return [*SPECIALS, *sorted(t for t, c in counts.items() if c >= min_count and t not in SPECIALS)]


def encode(seqs: list[list[str]], vocab: list[str], width: int, limit: int, target: bool) -> tuple[torch.Tensor, int]:
    """(rows of ids padded to `width`, tokens that became <unk>): a source as it is, a target as (<s> + target
    for the decoder's input, target + </s> to predict), each cut to `limit` tokens."""
    lookup = {t: i for i, t in enumerate(vocab)}
    rows = torch.full((len(seqs), 2 if target else 1, width), PAD, dtype=torch.long)
    unknown = 0
    for r, seq in enumerate(seqs):
        ids = [lookup.get(t, UNK) for t in seq[:limit]]
        unknown += ids.count(UNK)
        if target:
            rows[r, 0, :len(ids) + 1] = torch.tensor([BOS, *ids])
            rows[r, 1, :len(ids) + 1] = torch.tensor([*ids, EOS])
        else:
            rows[r, 0, :len(ids)] = torch.tensor(ids, dtype=torch.long)
    return rows, unknown


@register_dataset("pairs")
def pairs(source: str = "dates", path: str | None = None, tokens: str = "char", lowercase: bool = False,
          n_samples: int = 10000, length: int = 20, min_length: int | None = None, symbols: int = 10,
          max_source: int | None = None, max_target: int | None = None, overflow: str = "truncate",
          split: str = "random", val_split: float = 0.1, test_split: float = 0.1, split_seed: int = 0,
          separator: str | None = None, shared_vocab: bool = False, min_count: int = 1, max_mb: float = 50,
          target_tokens: str | None = None) -> DataBundle:
    """(source, target) token sequences: generated tasks (reverse, sort, Spanish dates and numbers), a TSV/CSV, FreeDict."""
    target_tokens = target_tokens or tokens
    for key, value, allowed in (("source", source, SOURCES), ("tokens", tokens, ("char", "word")),
                                ("target_tokens", target_tokens, ("char", "word")),
                                ("overflow", overflow, ("truncate", "error")), ("split", split, ("random", "consecutive"))):
        if value not in allowed:
            raise DlrunError(f"dataset.{key}={value} is not one of {'|'.join(allowed)} (dataset=pairs).")
    notes, where = [], path if source in ("file", "freedict") and path else f"dataset.source={source}"
    if source in GENERATED:
        raw = generated(source, n_samples, length, min_length, symbols, split_seed)
    elif source == "file":
        raw, empty = read_file(path, separator, max_mb)
        if empty:
            notes.append(f"skipped {empty} empty line(s) or pair(s) with an empty side in {path}")
    else:
        raw, ambiguous = read_freedict(path)
        notes.append(f"skipped {ambiguous} FreeDict entries whose headword has several entries")
    if lowercase:
        raw = [(s.lower(), t.lower()) for s, t in raw]
    src = [tokenize(s, tokens) for s, _ in raw]
    tgt = [tokenize(t, target_tokens) for _, t in raw]
    kept = [i for i in range(len(raw)) if src[i] and tgt[i]]  # a side of only spaces has no tokens
    src, tgt = [src[i] for i in kept], [tgt[i] for i in kept]
    if len(src) < 4:
        raise DlrunError(f"{where} gives {len(src)} pair(s); at least 4 are needed for three splits.")
    n_src, cut_src = fit_length(src, max_source, "source", overflow, where)
    n_tgt, cut_tgt = fit_length(tgt, max_target, "target", overflow, where)
    for cut, side, n in ((cut_src, "source", n_src), (cut_tgt, "target", n_tgt)):
        if cut:
            notes.append(f"cut {cut} {side}(s) longer than dataset.max_{side}={n} tokens to that length")
    order = torch.randperm(len(src), generator=torch.Generator().manual_seed(split_seed)).tolist() \
        if split == "random" else list(range(len(src)))
    n_test, n_val = round(len(src) * test_split), round(len(src) * val_split)
    parts = {"train": order[:len(src) - n_test - n_val], "val": order[len(src) - n_test - n_val:len(src) - n_test],
             "test": order[len(src) - n_test:]}
    train_src, train_tgt = [src[i] for i in parts["train"]], [tgt[i] for i in parts["train"]]
    src_vocab = vocabulary(train_src + (train_tgt if shared_vocab else []), min_count)
    tgt_vocab = src_vocab if shared_vocab else vocabulary(train_tgt, min_count)
    width = max(n_src, n_tgt + 1)
    splits, unknown = {}, 0
    for name, idx in parts.items():
        xs, u1 = encode([src[i] for i in idx], src_vocab, width, n_src, target=False)
        ts, u2 = encode([tgt[i] for i in idx], tgt_vocab, width, n_tgt, target=True)
        splits[name] = Split(torch.cat([xs, ts[:, :1]], dim=1), ts[:, 1])
        unknown += (u1 + u2) * (name != "train")
    if unknown:
        notes.append(f"{unknown} validation and test token(s) not in the training vocabulary became <unk>")
    text = {"tokens": tokens, "target_tokens": target_tokens, "lowercase": lowercase, "max_source": n_src,
            "max_target": n_tgt}
    return DataBundle(splits["train"], splits["val"], splits["test"], input_shape=(2, width), num_outputs=len(tgt_vocab),
                      task="seq2seq", classes=tgt_vocab, tokens=True, vocab=src_vocab, text=text, notes=notes)
