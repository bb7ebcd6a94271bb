"""The character language model (model=charlm) on text files (dataset=text)."""
from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import pytest
import torch

import dlrun
from conftest import assert_config_mistake, read_json, run_dlrun
from dlrun.data.text import DEFAULT_TEXT, text
from dlrun.registry import create_model
from dlrun.tasks.base import build_task

PANGRAM = "the quick brown fox jumps over the lazy dog. "


@pytest.fixture
def pangrams(tmp_path) -> Path:
    path = tmp_path / "pangrams.txt"
    path.write_text(PANGRAM * 200)
    return path


def test_text_windows_are_the_text_and_the_next_character(pangrams):
    data = text(str(pangrams), length=20)
    vocab = data.classes
    assert vocab == sorted(set(PANGRAM)) and data.num_outputs == len(vocab) == 28 and data.tokens
    decode = lambda t: "".join(vocab[int(i)] for i in t)  # noqa: E731
    assert torch.equal(data.train.y[:, :-1], data.train.x[:, 1:])  # the target is the input shifted by one
    # train, val and test are consecutive stretches: together they are the start of the text
    whole = torch.cat([torch.cat([s.x, s.y[:, -1:]], 1).flatten() for s in (data.train, data.val, data.test)])
    assert decode(whole) == (PANGRAM * 200)[: len(whole)]
    assert len(data.train) == 342 and len(data.val) == len(data.test) == 43  # 428 windows of 21 characters


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn", "transformer"])
def test_each_step_sees_only_the_steps_before_it(cell):
    torch.manual_seed(0)
    model = create_model("charlm", input_shape=(12,), num_outputs=9, cell=cell, hidden=16, heads=2).eval()
    x = torch.randint(0, 9, (3, 12))
    changed = x.clone()
    changed[:, 7:] = (changed[:, 7:] + 1) % 9  # change the future of step 6
    a, b = model(x), model(changed)
    assert a.shape == (3, 12, 9)
    torch.testing.assert_close(a[:, :7], b[:, :7])  # scores up to step 6 ignore what comes later
    assert not torch.allclose(a[:, 7:], b[:, 7:])


def test_step_cross_entropy_is_the_mean_over_every_step():
    torch.manual_seed(0)
    out, y = torch.randn(4, 5, 7), torch.randint(0, 7, (4, 5))
    manual = -torch.log_softmax(out, dim=2).gather(2, y.unsqueeze(2)).mean()
    torch.testing.assert_close(build_task("next_token", {"name": "auto"}, 7).loss_fn(out, y), manual)


def test_sampling_is_reproducible_and_greedy_at_temperature_zero():
    torch.manual_seed(0)
    model = create_model("charlm", input_shape=(8,), num_outputs=5, hidden=16)
    prompt = torch.tensor([1, 2, 3])
    first = model.sample(prompt, 10, 1.0, torch.Generator().manual_seed(3))
    assert first.shape == (10,) and torch.equal(first, model.sample(prompt, 10, 1.0, torch.Generator().manual_seed(3)))
    greedy, seq = model.sample(prompt, 4, 0.0), prompt
    for _ in range(4):  # the likeliest next token, again and again
        seq = torch.cat([seq, model(seq[-8:].unsqueeze(0))[0, -1].argmax().view(1)])
    assert torch.equal(greedy, seq[3:])


def test_charlm_learns_a_repeated_sentence_and_writes_it_on(tmp_path, pangrams):
    s = dlrun.run(["model=charlm", "model.hidden=64", "model.temperature=0", "model.sample_length=90", "dataset=text",
                   f"dataset.path={pangrams}", "dataset.length=32", "trainer.epochs=15", "optimizer.lr=0.01",
                   "logger=quiet"], run_dir=str(tmp_path / "run"))["summary"]
    assert s["task"] == "next_token" and s["test_perplexity"] < 1.3 and s["test_accuracy"] > 0.95  # 28 letters
    assert s["test_bits_per_token"] == pytest.approx(math.log2(s["test_perplexity"]))
    written = (tmp_path / "run" / "samples.txt").read_text()
    assert written == s["sample"] and len(written) == 32 + 90
    start = PANGRAM.index(written[:10])  # the prompt is somewhere in the sentence; the rest follows it
    assert written[32:] == (PANGRAM * 4)[start + 32: start + 32 + 90]


CLI_CASE = ["model=charlm"]


@pytest.mark.parametrize("overrides,message", [
    (["model=charlm"], "model=charlm does not fit dataset=digits: model=charlm reads token ids, from a text dataset"),
    (["dataset=text"], "model=mlp does not fit dataset=text: it gives token ids (text), which model=charlm"),
    (["model=charlm", "dataset=text", "dataset.path=/no/such.txt"], "cannot read the text file /no/such.txt"),
    (["model=charlm", "dataset=text", "model.cell=lstn"], "unknown model.cell 'lstn' for model=charlm"),
])
def test_charlm_mistakes_are_clear_errors(tmp_path, overrides, message):
    assert_config_mistake(tmp_path, overrides, message, through_cli=overrides == CLI_CASE)


@pytest.mark.slow
@pytest.mark.skipif(not Path(DEFAULT_TEXT).exists(), reason=f"{DEFAULT_TEXT} (Debian's base-files) is missing")
def test_charlm_on_real_english_beats_letter_frequencies(tmp_path):
    """60 epochs on the GPL's 35k characters: fewer bits per character on the (unseen) last tenth than
    the training text's own character frequencies give (a unigram model, ~4.4 bits)."""
    proc = run_dlrun("model=charlm", "dataset=text", "trainer.epochs=60", "trainer.batch_size=32",
                     "optimizer.lr=0.003", "logger=quiet", f"hydra.run.dir={tmp_path}", timeout=900)
    assert proc.returncode == 0, proc.stderr
    data = text()
    counts = Counter(data.train.x.flatten().tolist())
    total = sum(counts.values())
    test_tokens = data.test.y.flatten().tolist()
    unigram = -sum(math.log2(max(counts[t], 1) / total) for t in test_tokens) / len(test_tokens)
    bits = read_json(tmp_path / "summary.json")["test_bits_per_token"]
    assert bits < unigram - 0.5, (bits, unigram)
