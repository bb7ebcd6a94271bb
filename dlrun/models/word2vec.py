"""word2vec's skip-gram model (Mikolov et al. 2013): a vector per word as a centre and another as a context.

The score of a (centre, context) pair is the dot product of the two vectors; trained with a sigmoid
against real and noise pairs (dataset=skipgram), words used in similar contexts get similar centre
vectors. Those are the embeddings (`embeddings()`), written with each word's nearest neighbours after the test.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from dlrun.errors import DlrunError
from dlrun.models.base import Model
from dlrun.registry import register_model


@register_model("word2vec")
class Word2Vec(Model):
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

    def embeddings(self) -> torch.Tensor:
        """The centre vectors: the word embeddings (embeddings.tsv, neighbours.txt)."""
        return self.centre.weight.detach()
