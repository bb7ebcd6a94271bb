"""A target sequence for a source sequence (translation): teacher forcing in training, search in evaluation.

The model's output holds, per step, the target scores under teacher forcing and the hypothesis' token
(dlrun/models/seq2seq.py): the loss is the cross-entropy of the scores with label smoothing, padding left out;
accuracy counts the hypothesis' tokens that match the reference at their position (in training the teacher-forced
guesses, in validation and test the searched translation). The test adds the exact-match rate and sacrebleu's
corpus BLEU and chrF (0-100; BLEU on characters when the data is tokenised in characters) of the translations,
and writes samples.txt (source, reference, hypothesis) and attention.png (cross-attention of a few test pairs).
"""
from __future__ import annotations

import torch
from torch import nn

from dlrun.data.pairs import PAD, detokenize, strip_ids
from dlrun.errors import DlrunError
from dlrun.models.seq2seq import Seq2Seq as Seq2SeqModel
from dlrun.models.seq2seq import split_output
from dlrun.tasks.base import Artifacts, Task, register_task
from dlrun.train.checkpoint import atomic_write

SAMPLES, MAPS = 20, 4  # test pairs in samples.txt and attention.png


class TokenCrossEntropy(nn.CrossEntropyLoss):
    """Cross-entropy of a seq2seq output's teacher-forced scores against the target tokens, padding left out."""

    def forward(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        scores, _ = split_output(out)
        return super().forward(scores.flatten(0, 1), y.flatten())


def bleu_chrf(hypotheses: list[str], references: list[str], kind: str) -> tuple[float, float]:
    """sacrebleu's corpus BLEU (its `char` tokenisation for character data, else 13a) and chrF, one reference each."""
    from sacrebleu.metrics import BLEU, CHRF

    bleu = BLEU(tokenize="char" if kind == "char" else "13a").corpus_score(hypotheses, [references]).score
    return bleu, CHRF().corpus_score(hypotheses, [references]).score


@register_task
class Seq2Seq(Task):
    """a target sequence for a source sequence (softmax per step; greedy or beam search to translate)"""

    name, losses, classification = "seq2seq", ("cross_entropy",), True
    headline = "test_exact_match"

    def __init__(self, loss_name, loss_fn, data=None, class_weight=None):
        super().__init__(loss_name, loss_fn, data, class_weight)
        text = (data or {}).get("text") or {}
        self.kind = text.get("target_tokens") or text.get("tokens", "char")  # how the target's tokens join

    @classmethod
    def build(cls, loss, num_outputs, data=None, class_weight=None):
        try:
            import sacrebleu  # noqa: F401 - BLEU and chrF after the test; refused before training, not after
        except ImportError:
            raise DlrunError("task=seq2seq scores translations with sacrebleu: pip install sacrebleu") from None
        return super().build(loss, num_outputs, data, class_weight)

    @classmethod
    def make_loss(cls, name, options, num_outputs):
        return TokenCrossEntropy(ignore_index=PAD, label_smoothing=options.get("label_smoothing", 0.0))

    @classmethod
    def adapt(cls, data) -> None:
        if data.task != cls.name:
            raise DlrunError(f"task=seq2seq (model=seq2seq) maps a source sequence to a target sequence: it needs "
                             f"(source, target) pairs, dataset=pairs; this dataset gives {data.task} targets.")

    def predict(self, out: torch.Tensor) -> torch.Tensor:
        return split_output(out)[1]

    @staticmethod
    def hits(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per pair: the fraction of its target tokens (</s> included) that the hypothesis has at their place."""
        real = y != PAD
        return ((pred == y) & real).sum(dim=1) / real.sum(dim=1).clamp_min(1)

    def strings(self, rows: torch.Tensor, vocab: list[str]) -> list[str]:
        """Token id rows as text, each up to its </s>."""
        return [detokenize([vocab[i] for i in strip_ids(r)], self.kind) for r in rows.tolist()]

    def metrics(self, out, y, classes):
        hyp_ids, ref_ids = split_output(out)[1], y
        exact = [strip_ids(h) == strip_ids(r) for h, r in zip(hyp_ids.tolist(), ref_ids.tolist())]
        bleu, chrf = bleu_chrf(self.strings(hyp_ids, classes), self.strings(ref_ids, classes), self.kind)
        return {"exact_match": sum(exact) / max(len(exact), 1), "bleu": bleu, "chrf": chrf}, {}

    def decode(self, out, classes, top_k=3):
        """The translation of each input."""
        return [{"translation": text} for text in self.strings(split_output(out)[1], classes)]

    def artifacts(self, a: Artifacts, summary: dict) -> None:
        """samples.txt: source, reference and hypothesis of the first test pairs; attention.png: their
        cross-attention, source tokens against generated tokens."""
        hyp = torch.cat([split_output(o)[1] for o, _ in a.outputs]).cpu()
        x, y = a.data.test.x.cpu(), a.data.test.y.cpu()
        sources = [detokenize([a.data.vocab[i] for i in strip_ids(r)], (a.data.text or {}).get("tokens", "char"))
                   for r in x[:SAMPLES, 0].tolist()]
        refs = self.strings(y[:SAMPLES], a.data.classes)
        hyps = self.strings(hyp[:SAMPLES], a.data.classes)
        text = "".join(f"source:     {s}\nreference:  {r}\nhypothesis: {h}{'' if h == r else '   (wrong)'}\n\n"
                       for s, r, h in zip(sources, refs, hyps))
        atomic_write(a.run_dir / "samples.txt", lambda f: f.write(text.encode()), durable=False)
        summary["samples"] = [{"source": s, "reference": r, "hypothesis": h} for s, r, h in zip(sources, refs, hyps)]
        a.say(f"test: exact match {summary.get('test_exact_match', 0):.4f}, BLEU {summary.get('test_bleu', 0):.2f}, chrF "
              f"{summary.get('test_chrf', 0):.2f}; samples (samples.txt):\n"
              + "\n".join(f"  {s} -> {h}" for s, h in zip(sources[:3], hyps[:3])))
        if not isinstance(a.model, Seq2SeqModel):
            return
        src = x[:MAPS, 0].to(next(a.model.parameters()).device)
        tokens, att = a.model.translate(src, attention=True)
        if att is None:  # kind=rnn attention=none: nothing to draw
            return
        maps = []
        for row, out_row, weights in zip(src.tolist(), tokens.tolist(), att.cpu()):
            n_src, n_out = len(strip_ids(row)), len(strip_ids(out_row)) + 1  # the </s> step too
            maps.append({"weights": weights[:n_out, :n_src].tolist(),
                         "source": [a.data.vocab[i] for i in row[:n_src]],
                         "output": [a.data.classes[i] for i in out_row[:n_out]]})
        a.plotter.attention(maps, a.run_dir / "attention.png", f"{a.title}: cross-attention of test pairs")
