"""word2vec (skip-gram with negative sampling): the pairs, the model, and embeddings that group similar words."""
from __future__ import annotations

import random
from collections import Counter

import pytest
import torch

import dlrun
from conftest import assert_config_mistake
from dlrun.data.skipgram import pairs, skipgram, words_of
from dlrun.registry import create_model
from dlrun.tasks.base import nearest

ANIMALS, FOODS, VEHICLES, PLACES = ["cat", "dog", "horse", "cow"], ["fish", "meat", "grass", "hay"], \
    ["car", "bus", "truck", "bike"], ["town", "school", "work", "home"]


@pytest.fixture
def corpus(tmp_path):
    """Animals only ever eat and sleep; vehicles only drive and park: two families of contexts."""
    rng = random.Random(0)
    lines = []
    for _ in range(1500):
        if rng.random() < 0.5:
            lines.append(f"the {rng.choice(ANIMALS)} eats {rng.choice(FOODS)} and the {rng.choice(ANIMALS)} sleeps")
        else:
            lines.append(f"my {rng.choice(VEHICLES)} drives to {rng.choice(PLACES)} and my {rng.choice(VEHICLES)} parks")
    path = tmp_path / "corpus.txt"
    path.write_text(".\n".join(lines))
    return path


def test_skipgram_pairs_are_the_words_within_the_window_then_noise():
    ids = torch.arange(10)  # ten different words in a row: a pair's distance is the difference of its ids
    noise = torch.full((10,), 0.1, dtype=torch.float64)
    x, y = pairs(ids, window=2, negatives=3, noise=noise, g=torch.Generator().manual_seed(0))
    positive = x[y[:, 0] == 1]
    assert len(positive) == 2 * (9 + 8) and len(x) == 4 * len(positive)  # 3 noise pairs per real one
    assert set((positive[:, 0] - positive[:, 1]).abs().tolist()) == {1, 2}
    negative = x[y[:, 0] == 0]
    assert torch.equal(negative[:, 0], positive[:, 0].repeat_interleave(3))  # same centres, noise contexts


def test_skipgram_vocabulary_is_by_frequency_and_the_test_pairs_are_a_tenth(corpus):
    data = skipgram(str(corpus), window=2, negatives=4)
    counts = Counter(words_of(corpus.read_text()))
    assert [(-counts[w], w) for w in data.vocab] == sorted((-c, w) for w, c in counts.items())  # most frequent first
    assert set(ANIMALS + VEHICLES) <= set(data.vocab)
    assert data.task == "binary" and data.input_shape == (2,) and data.tokens
    assert words_of("Don't stop, it's 2 AM") == ["don't", "stop", "it's", "am"]
    n = len(data.train) + len(data.val) + len(data.test)
    assert len(data.test) == pytest.approx(0.1 * n, rel=0.05)


def test_word2vec_scores_a_pair_by_the_dot_product_of_its_vectors():
    torch.manual_seed(0)
    model = create_model("word2vec", input_shape=(2,), num_outputs=1, vocab_size=7, dim=4)
    torch.nn.init.normal_(model.context.weight)
    x = torch.tensor([[0, 3], [5, 5]])
    expected = (model.centre.weight[x[:, 0]] * model.context.weight[x[:, 1]]).sum(1, keepdim=True)
    torch.testing.assert_close(model(x), expected)
    _, near = nearest(model.embeddings(), torch.tensor([2, 4]), k=6)
    assert 2 not in near[0].tolist() and 4 not in near[1].tolist()  # a word is never its own neighbour


def test_words_in_the_same_contexts_end_up_neighbours(tmp_path, corpus):
    run = dlrun.run(["model=word2vec", "model.dim=16", "dataset=skipgram", f"dataset.path={corpus}",
                     "trainer.epochs=4", "trainer.batch_size=256", "optimizer.lr=0.01", "logger=quiet"],
                    run_dir=str(tmp_path / "run"))
    # real pairs told from noise on unseen text better than by their share alone (1 in 5: 0.500 nats); noise
    # words often are real contexts in so small a vocabulary, so accuracy stays near the 0.8 majority share
    assert run["summary"]["test_loss"] < 0.45
    rows = [line.split("\t") for line in (tmp_path / "run" / "embeddings.tsv").read_text().splitlines()]
    words, vectors = [r[0] for r in rows], torch.tensor([[float(v) for v in r[1:]] for r in rows])
    vectors = torch.nn.functional.normalize(vectors, dim=1)
    for family in (ANIMALS, VEHICLES):
        for word in family:
            sims = vectors @ vectors[words.index(word)]
            sims[words.index(word)] = -2
            nearest = [words[i] for i in sims.topk(3).indices.tolist()]
            assert set(nearest) <= set(family), (word, nearest)  # its 3 nearest words are of its own family
    assert (tmp_path / "run" / "neighbours.txt").read_text().startswith(words[0] + ": ")


CLI_CASE = ["model=word2vec"]


@pytest.mark.parametrize("overrides,message", [
    (["model=word2vec"], "model=word2vec does not fit dataset=digits: model=word2vec reads token ids"),
    (["model=word2vec", "dataset=text"], "model=word2vec scores (centre, context) word pairs: use it with dataset=skipgram"),
    (["dataset=skipgram"], "model=mlp does not fit dataset=skipgram: it gives token ids"),
])
def test_word2vec_mistakes_are_clear_errors(tmp_path, overrides, message):
    assert_config_mistake(tmp_path, overrides, message, through_cli=overrides == CLI_CASE)