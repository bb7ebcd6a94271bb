"""Text in, text out, for the models that read text: a character model continues a prompt, a word model names a
word's nearest words, a sequence-to-sequence model translates. One implementation for `dlrun predict --text` and
`dlrun serve`."""
from __future__ import annotations

from dlrun.errors import DlrunError


def text_answer(predictor, text: str, length: int | None) -> str:
    """A character model's continuation of a prompt, or a word model's nearest words to each word given."""
    import torch

    from dlrun.models.base import can_sample, embeddings
    from dlrun.predict.inputs import encode_text
    from dlrun.tasks.base import nearest, neighbour_line

    vectors = embeddings(predictor.model)
    if vectors is not None and predictor.vocab:
        lines = []
        for word in text.lower().split():
            if word not in predictor.vocab:
                raise DlrunError(f"'{word}' is not in the model's vocabulary ({len(predictor.vocab)} words).")
            sims, ids = nearest(vectors, torch.tensor([predictor.vocab.index(word)]), min(5, len(predictor.vocab) - 1))
            lines.append(neighbour_line(word, [predictor.vocab[j] for j in ids[0].tolist()], sims[0].tolist()))
        return "\n".join(lines)
    if not can_sample(predictor.model) or not predictor.meta["tokens"]:
        raise DlrunError("--text is for character models (model=charlm) and word embeddings (model=word2vec); give "
                         "this model files of inputs.")
    prompt = encode_text(text, predictor.meta)
    new = predictor.model.sample(prompt.to(predictor.device), length=length,
                                 generator=torch.Generator().manual_seed(0))
    return text + "".join(predictor.classes[int(t)] for t in new)


def translations(predictor, texts: list[str]):
    """(outputs, one {"translation": ...} per text, notes on tokens the model does not know or cannot read)."""
    import torch

    from dlrun.data.pairs import encode_source

    encoded = [encode_source(text, predictor.meta) for text in texts]
    outputs = predictor.outputs(torch.cat([x for x, _, _ in encoded]))
    unknown, cut = sum(u for _, u, _ in encoded), sum(c for _, _, c in encoded)
    notes = [f"{unknown} token(s) not in the model's vocabulary became <unk>"] if unknown else []
    if cut:
        notes.append(f"{cut} token(s) beyond the {predictor.meta['text']['max_source']} the model reads were cut off")
    return outputs, predictor.task.decode(outputs, predictor.classes), notes
