"""A character-level language model: predict each next token from the ones before it, then write new text.

tokens -> embedding -> an LSTM, GRU or simple RNN, or a causal transformer (each step attends only to
earlier steps) -> scores over the vocabulary at every step. `sample()` writes text one token at a time,
drawing each from the softmax of the scores divided by a temperature.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from dlrun.errors import DlrunError
from dlrun.models.base import Model
from dlrun.models.transformer import sinusoidal_encoding
from dlrun.registry import register_model

CELLS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


@register_model("charlm")
class CharLM(Model):
    """Character language model: embedding, then lstm | gru | rnn | causal transformer, next-token scores."""

    takes_tokens = True  # integer token ids, not normalised floats
    can_sample = True  # sample(prompt): text after a prompt

    def __init__(self, input_shape: Sequence[int], num_outputs: int, cell: str = "lstm", embedding: int = 32,
                 hidden: int = 128, layers: int = 1, heads: int = 4, dropout: float = 0.0,
                 temperature: float = 0.8, sample_length: int = 300, vocab_size: int | None = None):
        super().__init__()
        if len(input_shape) != 1 or vocab_size is not None:  # vocab_size comes with word pairs (dataset=skipgram)
            raise DlrunError(f"model=charlm reads token sequences (dataset=text); this input has shape "
                             f"{tuple(input_shape)}.")
        if cell not in (*CELLS, "transformer"):
            raise DlrunError(f"unknown model.cell '{cell}' for model=charlm. Choose one of lstm, gru, rnn, transformer.")
        self.context, self.vocab, self.cell = int(input_shape[0]), int(num_outputs), cell
        self.temperature, self.sample_length = float(temperature), int(sample_length)
        self.embed = nn.Embedding(self.vocab, embedding)
        if cell == "transformer":
            if hidden % heads:
                raise DlrunError(f"model.hidden={hidden} must be a multiple of model.heads={heads}.")
            self.proj = nn.Linear(embedding, hidden)
            self.register_buffer("pos", sinusoidal_encoding(self.context, hidden), persistent=False)
            layer = nn.TransformerEncoderLayer(hidden, heads, 4 * hidden, dropout, activation="gelu",
                                               batch_first=True, norm_first=True)
            self.body = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
            self.norm = nn.LayerNorm(hidden)
        else:
            self.body = CELLS[cell](embedding, hidden, layers, batch_first=True, dropout=dropout if layers > 1 else 0.0)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, self.vocab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, steps) token ids -> (batch, steps, vocab) scores for the token after each step."""
        z = self.embed(x)
        if self.cell == "transformer":
            steps = x.shape[1]
            mask = nn.Transformer.generate_square_subsequent_mask(steps, device=x.device)  # no peeking ahead
            z = self.norm(self.body(self.proj(z) + self.pos[:steps], mask=mask, is_causal=True))
        else:
            z, _ = self.body(z)
        return self.head(self.drop(z))

    @torch.no_grad()
    def sample(self, prompt: torch.Tensor, length: int | None = None, temperature: float | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Continue the 1-D token tensor `prompt` by `length` tokens; temperature 0 takes the likeliest each time."""
        was_training = self.training
        self.eval()
        length = self.sample_length if length is None else length
        temperature = self.temperature if temperature is None else temperature
        tokens = prompt.clone()
        for _ in range(length):
            scores = self(tokens[-self.context:].unsqueeze(0))[0, -1].float()  # the last `context` tokens
            if temperature <= 0:
                nxt = scores.argmax().view(1)
            else:
                probs = torch.softmax(scores / temperature, dim=0)
                nxt = torch.multinomial(probs.cpu(), 1, generator=generator).to(tokens.device)
            tokens = torch.cat([tokens, nxt])
        self.train(was_training)
        return tokens[len(prompt):]
