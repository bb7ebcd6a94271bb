"""Sequence to sequence: dataset=pairs, model=seq2seq (transformer and rnn), task=seq2seq, predict --text."""
from __future__ import annotations

import datetime
from pathlib import Path

import pytest
import torch

import dlrun
from conftest import assert_clean_error, read_json, run_command_inprocess, run_dlrun, train_runs
from dlrun.cli.predict import predict_command
from dlrun.data.pairs import BOS, EOS, FREEDICT, MONTHS, PAD, pairs, spanish_number
from dlrun.errors import DlrunError
from dlrun.models.seq2seq import causal_mask, padding_mask, split_output
from dlrun.registry import create_model
from dlrun.tasks.base import build_task

sacrebleu = pytest.importorskip("sacrebleu")

SMALL = {"transformer": dict(kind="transformer", d_model=16, heads=2, layers=2, ff=32, dropout=0.0),
         "luong": dict(kind="rnn", embedding=8, hidden=16, attention="luong"),
         "bahdanau": dict(kind="rnn", cell="gru", embedding=8, hidden=16, attention="bahdanau"),
         "none": dict(kind="rnn", embedding=8, hidden=16, attention="none"),
         "post_norm_learned_tied": dict(kind="transformer", d_model=16, heads=2, layers=1, ff=32, dropout=0.0,
                                        pos="learned", norm_first=False, tie_embeddings=True)}
FAST = ["model=seq2seq", "dataset=pairs", "model.d_model=64", "model.ff=128", "model.layers=1", "model.dropout=0",
        "optimizer.lr=0.004", "trainer.batch_size=32"]


def tiny(name: str, steps: int = 7, vocab: int = 9, seed: int = 0):
    torch.manual_seed(seed)
    return create_model("seq2seq", input_shape=(2, steps), num_outputs=vocab, vocab_size=vocab + 2, **SMALL[name]).eval()


def batch(rows_src: list[list[int]], rows_tgt: list[list[int]], steps: int = 7) -> torch.Tensor:
    """Pairs as the data stores them: the source, and <s> + target, padded to `steps`."""
    x = torch.full((len(rows_src), 2, steps), PAD, dtype=torch.long)
    for i, (s, t) in enumerate(zip(rows_src, rows_tgt)):
        x[i, 0, :len(s)] = torch.tensor(s)
        x[i, 1, :len(t) + 1] = torch.tensor([BOS, *t])
    return x


# ---- data ------------------------------------------------------------------------------------------------
def test_generated_pairs_are_right_and_stored_shifted():
    data = pairs(source="dates", n_samples=300)
    src_vocab, tgt_vocab = data.vocab, data.classes
    assert src_vocab[:4] == tgt_vocab[:4] == ["<pad>", "<s>", "</s>", "<unk>"] and data.task == "seq2seq"
    text = lambda ids, vocab: "".join(vocab[i] for i in ids if i > EOS)  # noqa: E731
    for x, y in zip(data.train.x[:50], data.train.y[:50]):
        day, _, month, _, year = text(x[0], src_vocab).split(" ")
        assert text(y, tgt_vocab) == datetime.date(int(year), MONTHS.index(month) + 1, int(day)).isoformat()
        n = int((y != PAD).sum())
        assert x[1, 0] == BOS and y[n - 1] == EOS and torch.equal(x[1, 1:n], y[:n - 1])  # teacher forcing: shifted right
    assert len(data.train) == 240 and len(data.val) == len(data.test) == 30
    rev, srt = pairs(source="reverse", n_samples=50, length=5), pairs(source="sort", n_samples=50, length=5, min_length=2)
    for d, rule in ((rev, lambda s: s[::-1]), (srt, lambda s: "".join(sorted(s)))):
        for x, y in zip(d.train.x, d.train.y):
            assert text(y, d.classes) == rule(text(x[0], d.vocab))


@pytest.mark.parametrize("n,words", [(0, "cero"), (16, "dieciséis"), (21, "veintiuno"), (100, "cien"),
                                     (101, "ciento uno"), (1234, "mil doscientos treinta y cuatro"),
                                     (21000, "veintiún mil"), (31001, "treinta y un mil uno"),
                                     (999999, "novecientos noventa y nueve mil novecientos noventa y nueve")])
def test_spanish_number_words(n, words):
    assert spanish_number(n) == words


def test_longer_pairs_are_cut_and_counted_or_refused(tmp_path):
    path = tmp_path / "p.tsv"
    path.write_text("ab\tx\n\nabcdef\ty\n   \nabc\tzz\nba\tx\nbb\tz\nab\tyz\n")
    data = pairs(source="file", path=str(path), max_source=3, split="consecutive", val_split=0.2, test_split=0.2)
    assert data.input_shape == (2, 3) and len(data.train) + len(data.val) + len(data.test) == 6
    assert any("skipped 2 empty line(s)" in n for n in data.notes) and any("cut 1 source(s)" in n for n in data.notes)
    with pytest.raises(DlrunError, match=r"pair 2 has a source of 6 tokens, over dataset.max_source=3"):
        pairs(source="file", path=str(path), max_source=3, overflow="error")
    (tmp_path / "bad.tsv").write_text("ab\tba\nabc cba\n")
    with pytest.raises(DlrunError, match=r"bad.tsv, line 2: no '\\t' separator"):
        pairs(source="file", path=str(tmp_path / "bad.tsv"))


def test_words_and_unknown_tokens(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("".join(f"the cat {i},el gato {i}\n" for i in range(12)))
    data = pairs(source="file", path=str(path), tokens="word", split="consecutive", val_split=0.25, test_split=0.25)
    assert data.input_shape == (2, 4) and "cat" in data.vocab and "gato" in data.classes
    assert "10" not in data.vocab and any("became <unk>" in n for n in data.notes)  # numbers 6..11 unseen in training


@pytest.mark.skipif(not Path(FREEDICT).exists(), reason=f"{FREEDICT} is missing (Debian: dict-freedict-eng-spa)")
def test_freedict_entries_become_pairs():
    data = pairs(source="freedict", max_source=24, max_target=24)
    words = {"".join(data.vocab[i] for i in x[0] if i > EOS): "".join(data.classes[i] for i in y if i > EOS)
             for x, y in zip(data.train.x, data.train.y)}
    assert len(data.train) > 3000 and words.get("river", "río") == "río" and words.get("uncle", "tío") == "tío"


# ---- the model ------------------------------------------------------------------------------------------
def test_masks_by_hand():
    src = torch.tensor([[5, 6, 0], [7, 0, 0], [0, 0, 0]])
    assert padding_mask(src).tolist() == [[False, False, True], [False, True, True], [False, True, True]]
    assert causal_mask(3).tolist() == [[False, True, True], [False, False, True], [False, False, False]]


@pytest.mark.parametrize("name", list(SMALL))
def test_padding_changes_nothing(name):
    """A pair's outputs are the same alone and beside a longer pair (padded): padding is never attended to."""
    model = tiny(name)
    both = split_output(model(batch([[4, 5], [4, 6, 7, 8, 5]], [[4], [5, 6, 7]])))
    alone = split_output(model(batch([[4, 5]], [[4]])))
    torch.testing.assert_close(both[0][:1, :2], alone[0][:, :2])  # the scores of its two target steps
    assert torch.equal(both[1][:1], alone[1])  # and its translation


@pytest.mark.parametrize("name", list(SMALL))
def test_the_decoder_cannot_look_ahead(name):
    """Changing target token t changes no decoder output before t."""
    model = tiny(name)
    x = batch([[4, 5, 6], [7, 8, 9, 10]], [[4, 5, 6, 7, 8], [8, 7, 6, 5]])
    for t in (2, 4):
        changed = x.clone()
        changed[:, 1, t] = 3 + (changed[:, 1, t] + 1) % 6
        a, b = split_output(model(x))[0], split_output(model(changed))[0]
        torch.testing.assert_close(a[:, :t], b[:, :t])
        assert not torch.allclose(a[:, t:], b[:, t:])


@pytest.mark.parametrize("name", list(SMALL))
def test_beam_of_one_is_greedy_and_beams_end_in_eos(name):
    model = tiny(name, steps=9)
    src = torch.randint(4, 11, (6, 9))
    greedy, g_att = model.translate(src, beam=1, attention=True)
    beam1 = model.beam_search(model.core.encode(src), 9, 1)[0]
    assert torch.equal(greedy, beam1[:, :greedy.shape[1]]) and (beam1[:, greedy.shape[1]:] == PAD).all()
    wide, att = model.translate(src, beam=4, attention=True)
    for row in wide.tolist():  # </s> then padding only, or no </s> within the steps
        if EOS in row:
            assert all(t == PAD for t in row[row.index(EOS) + 1:])
    if name != "none":
        assert att.shape == (*wide.shape, 9) and torch.allclose(g_att.sum(-1)[greedy != PAD], torch.tensor(1.0))


def test_tied_and_shared_embeddings_are_one_table():
    model = create_model("seq2seq", input_shape=(2, 5), num_outputs=9, vocab_size=9, d_model=16, heads=2,
                         tie_embeddings=True, share_embeddings=True)
    core = model.core
    assert core.out.weight is core.tgt_embed.weight is core.src_embed.weight
    assert sum(p.numel() for p in model.parameters()) < sum(p.numel() for p in create_model(
        "seq2seq", input_shape=(2, 5), num_outputs=9, vocab_size=9, d_model=16, heads=2).parameters())


def test_bleu_and_chrf_are_sacrebleus():
    task = build_task("seq2seq", {"name": "auto"}, 8, {"text": {"tokens": "word"}})
    vocab = ["<pad>", "<s>", "</s>", "<unk>", "el", "gato", "negro", "perro"]
    refs, hyps = [[4, 5, 6, 2], [4, 7, 2, 0]], [[4, 5, 2, 0], [4, 7, 2, 0]]
    out = torch.zeros(2, 4, 9)
    out[..., -1] = torch.tensor(hyps, dtype=torch.float)
    metrics, _ = task.metrics(out, torch.tensor(refs), vocab)
    h, r = ["el gato", "el perro"], ["el gato negro", "el perro"]
    assert metrics["bleu"] == pytest.approx(sacrebleu.corpus_bleu(h, [r]).score)
    assert metrics["chrf"] == pytest.approx(sacrebleu.corpus_chrf(h, [r]).score)
    assert metrics["exact_match"] == 0.5
    char = build_task("seq2seq", {"name": "auto"}, 8, {"text": {"tokens": "char"}})
    chars = ["<pad>", "<s>", "</s>", "<unk>", "1", "2", "-"]
    out[..., -1] = torch.tensor([[4, 6, 5, 2], [4, 4, 2, 0]], dtype=torch.float)
    metrics, _ = char.metrics(out, torch.tensor([[4, 6, 4, 2], [4, 4, 2, 0]]), chars)
    assert metrics["bleu"] == pytest.approx(sacrebleu.corpus_bleu(["1-2", "11"], [["1-1", "11"]], tokenize="char").score)


# ---- training, predict ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dates_run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("seq2seq")
    return train_runs(folder, {"dates": [*FAST, "dataset.n_samples=3000", "trainer.epochs=6"]})["dates"]


def test_dates_are_learned_and_written_out(dates_run):
    """One transformer layer each side, 2400 training pairs, 6 epochs (about 12 s): seeds 0 to 2 reach 0.977 to 0.997."""
    s = read_json(dates_run / "summary.json")
    assert s["task"] == "seq2seq" and s["test_exact_match"] >= 0.9, s
    assert 90 <= s["test_bleu"] <= 100 and 90 <= s["test_chrf"] <= 100 and s["test_accuracy"] >= 0.95
    samples = (dates_run / "samples.txt").read_text()
    assert samples.startswith("source:     ") and "reference:  " in samples and "hypothesis: " in samples
    assert (dates_run / "attention.png").stat().st_size > 5000


def test_predict_on_the_test_split_equals_the_test_metrics(dates_run, capsys):
    code, out = run_command_inprocess(predict_command, [str(dates_run), "--split", "test"], capsys)
    s = read_json(dates_run / "summary.json")
    assert code == 0
    for key in ("test_loss", "test_accuracy", "test_exact_match", "test_bleu", "test_chrf"):
        assert f"{key}: {s[key]:.6g}" in out, (key, out)


def test_predict_translates_text(dates_run, capsys):
    code, out = run_command_inprocess(predict_command, [str(dates_run), "--text", "3 de marzo de 2021"], capsys)
    assert code == 0 and out.strip() == "2021-03-03"
    code, out = run_command_inprocess(predict_command, [str(dates_run), "--text", "3 de marzo de 2021", "--beam", "3"],
                                      capsys)
    assert code == 0 and out.strip() == "2021-03-03"
    code, out = run_command_inprocess(predict_command, [str(dates_run), "--text", "3 de marZo de 2021"], capsys)
    assert code == 0 and "1 token(s) not in the model's vocabulary became <unk>" in out
    code, out = run_command_inprocess(predict_command, [str(dates_run), "--text", ""], capsys)
    assert code == 2 and "--text" in out


def test_export_says_why_a_search_loop_is_not_a_graph(dates_run, capsys):
    """The model declares it (Model.not_a_graph): one line per graph format, before any exporter runs; the weights
    still export. A trace would have fixed the number of decoding steps to the example's."""
    from dlrun.cli.export import export_command

    before = sorted(p.name for p in dates_run.iterdir())
    for fmt in ("onnx", "torchscript", "pt2"):
        code, out = run_command_inprocess(export_command, [str(dates_run), "--format", fmt], capsys)
        assert code == 2 and f"model=seq2seq cannot be exported as {fmt}: its forward decodes with greedy or beam " \
            "search" in out and out.strip().count("\n") == 0, out
    assert sorted(p.name for p in dates_run.iterdir()) == before  # nothing written
    code, out = run_command_inprocess(export_command, [str(dates_run), "--format", "safetensors"], capsys)
    assert code == 0 and (dates_run / "model.safetensors").stat().st_size > 100_000


def test_short_reversal_is_learned(tmp_path):
    """Seeds 0 to 4 reach 0.975 to 1.0 exact match (about 5 s each)."""
    s = dlrun.run([*FAST, "dataset.source=reverse", "dataset.length=6", "dataset.n_samples=2000", "trainer.epochs=6",
                   "logger=quiet", "trainer.summary=false"], run_dir=str(tmp_path / "run"))["summary"]
    assert s["test_exact_match"] >= 0.9, s


# ---- bad input -----------------------------------------------------------------------------------------
def test_seq2seq_on_other_data_is_one_line_naming_what_fits(tmp_path):
    proc = run_dlrun("model=seq2seq", "dataset=digits", "debug=smoke", f"hydra.run.dir={tmp_path / 'run'}")
    assert_clean_error(proc, 2, "task=seq2seq (model=seq2seq) maps a source sequence to a target sequence",
                       "dataset=pairs")
    assert not (tmp_path / "run").exists()  # nothing half-written


@pytest.mark.parametrize("overrides,message", [
    (["model=mlp", "dataset=pairs", "dataset.n_samples=100"], "model=mlp does not fit dataset=pairs: it gives token ids (text), which"),
    (["model=charlm", "dataset=pairs", "dataset.n_samples=100"], "model=charlm reads token sequences (dataset=text)"),
    (["model=seq2seq", "dataset=text"], "it needs (source, target) pairs, dataset=pairs; this dataset gives next_token"),
    (["model=seq2seq", "dataset=pairs", "dataset.max_source=5", "dataset.overflow=error"],
     "pair 1 has a source of"),
    (["model=seq2seq", "dataset=pairs", "dataset.source=file"], "dataset.source=file reads dataset.path=FILE"),
    (["model=seq2seq", "dataset=pairs", "dataset.source=novels"], "dataset.source=novels is not one of"),
    (["model=seq2seq", "dataset=pairs", "dataset.n_samples=100", "model.kind=rnn", "model.attention=dot"], "attention=luong|bahdanau|none"),
    (["model=seq2seq", "dataset=pairs", "dataset.n_samples=100", "model.share_embeddings=true"], "dataset.shared_vocab=true"),
])
def test_seq2seq_mistakes_are_clear_errors(tmp_path, overrides, message):
    with pytest.raises(DlrunError) as err:
        dlrun.run([*overrides, "debug=smoke", "logger=quiet"], run_dir=str(tmp_path / "run"))
    assert message in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "run").exists()


# ---- the targets (slow) ------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["seq2seq_dates", "seq2seq_reverse", "seq2seq_numbers"])
def test_recipes_reach_their_targets(tmp_path, recipe):
    s = dlrun.run([f"experiment={recipe}", "logger=quiet", "trainer.summary=false"], run_dir=str(tmp_path / "run"))
    assert s["summary"]["test_exact_match"] >= 0.99, s["summary"]
