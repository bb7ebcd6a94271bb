"""word2vec's skip-gram model (Mikolov et al. 2013): a vector per word as a centre and another as a context.

The score of a (centre, context) pair is the dot product of the two vectors; trained with a sigmoid
against real and noise pairs (dataset=skipgram), words used in similar contexts get similar centre
vectors. Those are the embeddings: `neighbours()` ranks words by cosine similarity.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from dlrun.errors import DlrunError
from dlrun.registry import register_model


@register_model("word2vec")
class Word2Vec(nn.Module):
    """word2vec skip-gram: centre and context embeddings, a pair's score is their dot product (dataset=skipgram)."""

    takes_tokens = True  # (centre, context) word ids

    def __init__(self, input_shape: Sequence[int], num_outputs: int, vocab_size: int | None = None,
                 dim: int = 50):
        super().__init__()
        if tuple(input_shape) != (2,) or num_outputs != 1 or vocab_size is None:
            raise DlrunError("model=word2vec scores (centre, context) word pairs: use it with dataset=skipgram.")
        self.centre = nn.Embedding(vocab_size, dim)
        self.context = nn.Embedding(vocab_size, dim)
        # word2vec's own start: small random centre vectors, zero context vectors
        nn.init.uniform_(self.centre.weight, -0.5 / dim, 0.5 / dim)
        nn.init.zeros_(self.context.weight)

    def forward(self, pairs: torch.Tensor) -> torch.Tensor:
        """(batch, 2) word ids -> (batch, 1) scores: the logit that the context word really appears near the centre."""
        return (self.centre(pairs[:, 0]) * self.context(pairs[:, 1])).sum(dim=1, keepdim=True)

    @torch.no_grad()
    def neighbours(self, word_ids: torch.Tensor, k: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
        """The k words whose centre vectors are closest in cosine similarity to each of `word_ids` (itself excluded):
        (similarities, ids), each (len(word_ids), k)."""
        vectors = nn.functional.normalize(self.centre.weight, dim=1)
        sims = vectors[word_ids] @ vectors.T
        sims[torch.arange(len(word_ids)), word_ids] = -2.0  # never a word's own neighbour
        return sims.topk(k, dim=1)
