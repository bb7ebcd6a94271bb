"""Encoder-decoder models for sequence to sequence (model=seq2seq, with dataset=pairs and task=seq2seq).

kind=transformer is the encoder-decoder of "Attention is all you need" (Vaswani et al. 2017): token embeddings
scaled by sqrt(d_model) plus sinusoidal or learned positions, N encoder layers (self-attention under the source's
padding mask) and N decoder layers (masked self-attention: a step sees only the steps before it; cross-attention
to the source), built from torch's nn.TransformerEncoderLayer and nn.TransformerDecoderLayer; the output layer
may share the decoder's embedding (`tie_embeddings`), and both sides one embedding (`share_embeddings`, with
dataset.shared_vocab=true). kind=rnn is the classic it replaced: a bidirectional LSTM/GRU encoder and a decoder
with Luong (Luong et al. 2015, "general" score, input feeding) or Bahdanau (2015, additive) attention, or none
(the decoder sees the source only through the encoder's final state, as in Sutskever et al. 2014).

The input is a pair (batch, 2, L): row 0 the source, row 1 the target shifted right behind <s> (teacher forcing).
The output is (batch, L, V + 1): the scores of the V target tokens at each step under teacher forcing (the loss),
then one more channel, the hypothesis' token at that step: in training the likeliest token under teacher forcing,
in evaluation the token that greedy or beam search (`beam`) decoded from the source alone, so the validation and
test metrics are those of real translations. `translate()` returns the tokens and the cross-attention maps.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from dlrun.data.pairs import BOS, EOS, PAD
from dlrun.errors import DlrunError
from dlrun.models.base import Model
from dlrun.models.transformer import sinusoidal_encoding
from dlrun.registry import register_model

CELLS = {"lstm": nn.LSTM, "gru": nn.GRU}
ATTENTION = ("luong", "bahdanau", "none")


def split_output(out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A seq2seq output (batch, L, V + 1) as (scores (batch, L, V), hypothesis token ids (batch, L))."""
    return out[..., :-1], out[..., -1].round().long()


def padding_mask(tokens: torch.Tensor) -> torch.Tensor:
    """True where a token is padding (attention skips it); a row of padding only keeps its first position, so
    that attention over it stays defined."""
    pad = tokens == PAD
    pad[:, 0] &= ~pad.all(dim=1)
    return pad


def causal_mask(steps: int, device=None) -> torch.Tensor:
    """True above the diagonal: step t may not attend to steps after t."""
    return torch.ones(steps, steps, dtype=torch.bool, device=device).triu(1)


def trim(tokens: torch.Tensor) -> torch.Tensor:
    """The batch without the columns that are padding in every row (at least one column)."""
    used = int((tokens != PAD).any(dim=0).nonzero().max()) + 1 if (tokens != PAD).any() else 1
    return tokens[:, :used]


def select(tree, index: torch.Tensor):
    """Rows `index` of every tensor in a dict (beams reordered, or copied K times)."""
    return {k: v.index_select(0, index) for k, v in tree.items()}


class TransformerCore(nn.Module):
    """Embeddings * sqrt(d) + positions -> encoder layers; decoder layers (masked self-attention, cross-attention)."""

    def __init__(self, src_vocab: int, tgt_vocab: int, steps: int, d_model: int, heads: int, layers: int, ff: int,
                 dropout: float, pos: str, norm_first: bool, tie: bool, share: bool):
        super().__init__()
        if d_model % heads:
            raise DlrunError(f"model.d_model={d_model} must be a multiple of model.heads={heads}.")
        if pos not in ("sinusoidal", "learned"):
            raise DlrunError(f"model.pos={pos}: model=seq2seq takes pos=sinusoidal|learned.")
        self.scale = math.sqrt(d_model)
        self.src_embed = nn.Embedding(src_vocab, d_model, padding_idx=PAD)
        self.tgt_embed = self.src_embed if share else nn.Embedding(tgt_vocab, d_model, padding_idx=PAD)
        for emb in {self.src_embed, self.tgt_embed}:  # N(0, 1/d): N(0, 1) after the sqrt(d) scale
            nn.init.normal_(emb.weight, std=d_model ** -0.5)
            nn.init.zeros_(emb.weight[PAD])
        if pos == "learned":
            self.pos = nn.Parameter(torch.randn(steps, d_model) * 0.02)
        else:
            self.register_buffer("pos", sinusoidal_encoding(steps, d_model), persistent=False)
        self.drop = nn.Dropout(dropout)
        enc = nn.TransformerEncoderLayer(d_model, heads, ff, dropout, batch_first=True, norm_first=norm_first)
        dec = nn.TransformerDecoderLayer(d_model, heads, ff, dropout, batch_first=True, norm_first=norm_first)
        final = (lambda: nn.LayerNorm(d_model)) if norm_first else (lambda: None)  # pre-norm leaves it unnormalised
        self.encoder = nn.TransformerEncoder(enc, layers, norm=final(), enable_nested_tensor=False)
        self.decoder = nn.TransformerDecoder(dec, layers, norm=final())
        self.out = nn.Linear(d_model, tgt_vocab)
        if tie:
            self.out.weight = self.tgt_embed.weight
        self.record, self.attention = False, None  # the last decoder layer's cross-attention, when recording
        self.decoder.layers[-1].multihead_attn.register_forward_hook(self._keep_attention, with_kwargs=True)

    def _keep_attention(self, module, args, kwargs, output):
        """The cross-attention weights (averaged over heads), computed again only when asked for (plots)."""
        if self.record:
            _, self.attention = module.forward(*args, **{**kwargs, "need_weights": True, "average_attn_weights": True})

    def embed(self, table: nn.Embedding, tokens: torch.Tensor) -> torch.Tensor:
        return self.drop(table(tokens) * self.scale + self.pos[:tokens.shape[1]])

    def encode(self, src: torch.Tensor) -> dict:
        pad = padding_mask(src)
        return {"enc": self.encoder(self.embed(self.src_embed, src), src_key_padding_mask=pad), "pad": pad}

    def teacher(self, memory: dict, tgt_in: torch.Tensor) -> torch.Tensor:
        """Scores (batch, T, V) for every step at once; step t sees the target only up to t."""
        steps = tgt_in.shape[1]
        h = self.decoder(self.embed(self.tgt_embed, tgt_in), memory["enc"], tgt_mask=causal_mask(steps, tgt_in.device),
                         tgt_key_padding_mask=padding_mask(tgt_in), memory_key_padding_mask=memory["pad"])
        return self.out(h)

    def start(self, memory: dict) -> dict:
        return {}

    def step(self, memory: dict, state: dict, prefix: torch.Tensor):
        """(scores for the token after `prefix`, its cross-attention (batch, S) or None, state): the prefix is
        decoded again whole (no cache; the sequences here are short)."""
        scores = self.teacher(memory, prefix)[:, -1]
        return scores, self.attention[:, -1] if self.record else None, state


class RecurrentCore(nn.Module):
    """A bidirectional LSTM/GRU encoder; a decoder one step at a time with Luong, Bahdanau or no attention."""

    def __init__(self, src_vocab: int, tgt_vocab: int, cell: str, embedding: int, hidden: int, layers: int,
                 dropout: float, attention: str, share: bool):
        super().__init__()
        if cell not in CELLS or attention not in ATTENTION:
            raise DlrunError(f"model=seq2seq kind=rnn takes cell={'|'.join(CELLS)} and attention={'|'.join(ATTENTION)} "
                             f"(got cell={cell}, attention={attention}).")
        if hidden % 2:
            raise DlrunError(f"model.hidden={hidden} must be even: the encoder runs hidden/2 units each way.")
        self.lstm, self.attention, self.record = cell == "lstm", attention, False
        self.src_embed = nn.Embedding(src_vocab, embedding, padding_idx=PAD)
        self.tgt_embed = self.src_embed if share else nn.Embedding(tgt_vocab, embedding, padding_idx=PAD)
        drop = dropout if layers > 1 else 0.0
        self.encoder = CELLS[cell](embedding, hidden // 2, layers, batch_first=True, bidirectional=True, dropout=drop)
        feed = 0 if attention == "none" else hidden  # Luong: the last attentional state; Bahdanau: the context
        self.decoder = CELLS[cell](embedding + feed, hidden, layers, batch_first=True, dropout=drop)
        if attention == "luong":
            self.score = nn.Linear(hidden, hidden, bias=False)  # "general": h_t . W h_s
        elif attention == "bahdanau":
            self.key, self.query = nn.Linear(hidden, hidden, bias=False), nn.Linear(hidden, hidden)
            self.v = nn.Linear(hidden, 1, bias=False)  # v . tanh(W h_s + U s_{t-1})
        self.combine = nn.Linear(hidden if attention == "none" else 2 * hidden, hidden)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, tgt_vocab)

    def encode(self, src: torch.Tensor) -> dict:
        """Encoder states (packed: padding is never read) and the decoder's first state, the final states of both
        directions side by side; batch first, so that beams can reorder them."""
        pad = padding_mask(src)
        lengths = (~pad).sum(dim=1).cpu()
        packed = pack_padded_sequence(self.drop(self.src_embed(src)), lengths, batch_first=True, enforce_sorted=False)
        out, final = self.encoder(packed)
        enc, _ = pad_packed_sequence(out, batch_first=True, total_length=src.shape[1])
        join = lambda h: h.view(-1, 2, *h.shape[1:]).permute(2, 0, 1, 3).flatten(2)  # noqa: E731 (B, layers, H)
        memory = {"enc": enc, "pad": pad}
        if self.attention == "bahdanau":
            memory["keys"] = self.key(enc)
        if self.lstm:
            memory["h0"], memory["c0"] = join(final[0]), join(final[1])
        else:
            memory["h0"] = join(final)
        return memory

    def start(self, memory: dict) -> dict:
        state = {"h": memory["h0"]}
        if self.lstm:
            state["c"] = memory["c0"]
        if self.attention == "luong":
            state["feed"] = torch.zeros_like(memory["h0"][:, 0])
        return state

    def attend(self, memory: dict, query: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(context (batch, H), weights (batch, S)) over the source, padding excluded."""
        if self.attention == "luong":
            scores = torch.einsum("bsh,bh->bs", memory["enc"], self.score(query))
        else:
            scores = self.v(torch.tanh(memory["keys"] + self.query(query)[:, None])).squeeze(2)
        weights = scores.masked_fill(memory["pad"], float("-inf")).softmax(dim=1)
        return torch.einsum("bs,bsh->bh", weights, memory["enc"]), weights

    def step(self, memory: dict, state: dict, prefix: torch.Tensor):
        """(scores for the token after `prefix`, the attention (batch, S) or None, the next state); only the
        prefix's last token is read, the rest is in the state."""
        emb = self.drop(self.tgt_embed(prefix[:, -1]))
        hidden = (state["h"].transpose(0, 1).contiguous(),)
        if self.lstm:
            hidden += (state["c"].transpose(0, 1).contiguous(),)
        weights = None
        if self.attention == "luong":
            emb = torch.cat([emb, state["feed"]], dim=1)
        elif self.attention == "bahdanau":  # attend with the state before this step
            context, weights = self.attend(memory, state["h"][:, -1])
            emb = torch.cat([emb, context], dim=1)
        out, hidden = self.decoder(emb[:, None], hidden if self.lstm else hidden[0])
        out = out[:, 0]
        if self.attention == "luong":  # attend with the state after it
            context, weights = self.attend(memory, out)
        joined = out if self.attention == "none" else torch.cat([out, context], dim=1)
        attentional = torch.tanh(self.combine(joined))
        new = {"h": (hidden[0] if self.lstm else hidden).transpose(0, 1)}
        if self.lstm:
            new["c"] = hidden[1].transpose(0, 1)
        if self.attention == "luong":
            new["feed"] = attentional
        return self.out(self.drop(attentional)), weights, new

    def teacher(self, memory: dict, tgt_in: torch.Tensor) -> torch.Tensor:
        """Scores (batch, T, V): the decoder run over the given target, one step at a time."""
        state, scores = self.start(memory), []
        for t in range(tgt_in.shape[1]):
            s, _, state = self.step(memory, state, tgt_in[:, :t + 1])
            scores.append(s)
        return torch.stack(scores, dim=1)


@register_model("seq2seq")
class Seq2Seq(Model):
    """Encoder-decoder: kind=transformer (Attention is all you need) or kind=rnn (LSTM/GRU, Luong/Bahdanau attention)."""

    takes_tokens = True
    not_a_graph = ("its forward decodes with greedy or beam search, a loop that stops when every hypothesis has "
                   "ended (</s>), so a traced graph would fix the number of steps to the example's")

    def __init__(self, input_shape: Sequence[int], num_outputs: int, vocab_size: int | None = None,
                 kind: str = "transformer", d_model: int = 128, heads: int = 4, layers: int = 2, ff: int = 256,
                 dropout: float = 0.1, pos: str = "sinusoidal", norm_first: bool = True, tie_embeddings: bool = False,
                 share_embeddings: bool = False, cell: str = "lstm", embedding: int = 64, hidden: int = 128,
                 attention: str = "luong", beam: int = 1, length_penalty: float = 0.6):
        super().__init__()
        if len(input_shape) != 2 or input_shape[0] != 2 or vocab_size is None:
            raise DlrunError(f"model=seq2seq maps a source sequence to a target sequence: use it with dataset=pairs "
                             f"(this dataset gives inputs of shape {tuple(input_shape)}).")
        if share_embeddings and vocab_size != num_outputs:
            raise DlrunError("model.share_embeddings=true needs one vocabulary for both sides: dataset.shared_vocab=true.")
        if beam < 1:
            raise DlrunError(f"model.beam={beam}: give 1 (greedy search) or more beams.")
        self.steps, self.beam, self.length_penalty, self.vocab = int(input_shape[1]), int(beam), length_penalty, num_outputs
        if kind == "transformer":
            self.core = TransformerCore(vocab_size, num_outputs, self.steps, d_model, heads, layers, ff, dropout, pos,
                                        norm_first, tie_embeddings, share_embeddings)
        elif kind == "rnn":
            if tie_embeddings:
                raise DlrunError("model.tie_embeddings is for kind=transformer.")
            self.core = RecurrentCore(vocab_size, num_outputs, cell, embedding, hidden, layers, dropout, attention,
                                      share_embeddings)
        else:
            raise DlrunError(f"model.kind={kind}: model=seq2seq takes kind=transformer|rnn.")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, 2, L) pairs -> (batch, L, V + 1): teacher-forced scores, then the hypothesis' tokens."""
        steps = x.shape[-1]
        src, tgt_in = trim(x[:, 0]), trim(x[:, 1])
        memory = self.core.encode(src)
        scores = self.core.teacher(memory, tgt_in).float()
        tokens = scores.argmax(dim=-1) if self.training else self.search(memory, steps)[0]
        out = scores.new_zeros(len(x), steps, self.vocab + 1)
        out[:, :scores.shape[1], :-1] = scores
        out[..., -1] = PAD
        out[:, :tokens.shape[1], -1] = tokens.float()
        return out

    @torch.no_grad()
    def translate(self, src: torch.Tensor, beam: int | None = None, steps: int | None = None,
                  attention: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Source token ids (batch, S) -> (target token ids (batch, T) ending in </s> then <pad>, cross-attention
        (batch, T, S) or None); `beam` 1 is greedy search."""
        was = self.training
        self.eval()
        self.core.record = attention
        try:
            memory = self.core.encode(trim(src))
            tokens, att = self.search(memory, steps or self.steps, beam)
        finally:
            self.core.record = False
            self.train(was)
        if att is not None:  # back to the source's full width
            att = nn.functional.pad(att, (0, src.shape[1] - att.shape[2]))
        return tokens, att

    def search(self, memory: dict, steps: int, beam: int | None = None):
        beam = self.beam if beam is None else beam
        return self.greedy(memory, steps) if beam == 1 else self.beam_search(memory, steps, beam)

    def greedy(self, memory: dict, steps: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The likeliest token at each step, until every row has written </s> (then <pad>) or `steps` tokens."""
        batch = len(memory["pad"])
        prefix = torch.full((batch, 1), BOS, dtype=torch.long, device=memory["pad"].device)
        state, done, maps = self.core.start(memory), torch.zeros(batch, dtype=torch.bool, device=prefix.device), []
        for _ in range(steps):
            scores, weights, state = self.core.step(memory, state, prefix)
            nxt = scores.argmax(dim=-1).masked_fill(done, PAD)
            prefix = torch.cat([prefix, nxt[:, None]], dim=1)
            maps.append(weights)
            done |= nxt == EOS
            if done.all():
                break
        return prefix[:, 1:], torch.stack(maps, dim=1) if maps[0] is not None else None

    def beam_search(self, memory: dict, steps: int, k: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Beam search: `k` live hypotheses per row; one that writes </s> is finished with its score divided by
        the length penalty ((5 + length) / 6) ** length_penalty (Wu et al. 2016); a row stops with `k` finished,
        and the best finished (or, at `steps`, live) hypothesis by that score wins."""
        batch, device = len(memory["pad"]), memory["pad"].device
        rows = torch.arange(batch, device=device)
        memory = select(memory, rows.repeat_interleave(k))
        state = self.core.start(memory)
        prefix = torch.full((batch * k, 1), BOS, dtype=torch.long, device=device)
        score = torch.full((batch, k), float("-inf"), device=device)
        score[:, 0] = 0.0
        maps = None
        finished: list[list[tuple[float, list[int], torch.Tensor | None]]] = [[] for _ in range(batch)]
        done = [False] * batch
        penalty = lambda n: ((5 + n) / 6) ** self.length_penalty  # noqa: E731
        for t in range(steps):
            scores, weights, state = self.core.step(memory, state, prefix)
            logp = scores.float().log_softmax(dim=-1).view(batch, k, -1)
            vocab = logp.shape[2]
            top, idx = (score[:, :, None] + logp).view(batch, -1).topk(min(2 * k, k * vocab), dim=1)
            maps = weights[:, None] if maps is None and weights is not None else \
                torch.cat([maps, weights[:, None]], dim=1) if weights is not None else None
            new_score = torch.full((batch, k), float("-inf"), device=device)
            source = torch.zeros(batch, k, dtype=torch.long, device=device)
            token = torch.full((batch, k), PAD, dtype=torch.long, device=device)
            top_l, idx_l = top.tolist(), idx.tolist()
            for b in range(batch):
                if done[b]:
                    continue
                live = 0
                for rank, (s, i) in enumerate(zip(top_l[b], idx_l[b])):
                    if s == float("-inf") or live == k:
                        break
                    beam, tok = divmod(i, vocab)
                    if tok == EOS:
                        if rank < k:
                            r = b * k + beam
                            finished[b].append((s / penalty(t + 1), prefix[r, 1:].tolist() + [EOS],
                                                maps[r] if maps is not None else None))
                    else:
                        new_score[b, live], source[b, live], token[b, live] = s, beam, tok
                        live += 1
                done[b] = len(finished[b]) >= k
            if all(done):
                break
            order = (rows[:, None] * k + source).view(-1)
            prefix = torch.cat([prefix[order], token.view(-1, 1)], dim=1)
            state = select(state, order)
            maps = maps[order] if maps is not None else None
            score = new_score
        return self._best(finished, prefix, score, maps, penalty, k)

    def _best(self, finished, prefix, score, maps, penalty, k):
        """Each row's best hypothesis, as (tokens (batch, T), attention (batch, T, S) or None), </s> then <pad>."""
        best = []
        for b, hyps in enumerate(finished):
            if len(hyps) < k:  # ran out of steps: the live hypotheses compete too
                for j in range(k):
                    if score[b, j] > float("-inf"):
                        r = b * k + j
                        hyps.append((float(score[b, j]) / penalty(prefix.shape[1] - 1), prefix[r, 1:].tolist(),
                                     maps[r] if maps is not None else None))
            best.append(max(hyps, key=lambda h: h[0]))
        width = max(len(h[1]) for h in best)
        tokens = torch.full((len(best), width), PAD, dtype=torch.long, device=prefix.device)
        att = None if maps is None else torch.zeros(len(best), width, maps.shape[2], device=prefix.device)
        for b, (_, toks, m) in enumerate(best):
            tokens[b, :len(toks)] = torch.tensor(toks, device=prefix.device)
            if att is not None:
                att[b, :len(toks)] = m[:len(toks)]
        return tokens, att
