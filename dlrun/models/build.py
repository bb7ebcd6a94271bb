"""A model from its config, for a dataset's shapes: one place for the CLI, the API, `dlrun summary` and predict."""
from __future__ import annotations

from torch import nn

from dlrun.errors import DlrunError
from dlrun.models.base import is_token_model, reads_features
from dlrun.registry import MODELS, create_model


def build_model(model_cfg: dict, input_shape, num_outputs: int, dataset: str, tokens: bool = False,
                vocab: list[str] | None = None, features: dict | None = None,
                heads: dict[str, int] | None = None) -> nn.Module:
    """A model from its config (`name`, its own keys, and `task`, which is the runner's) for a dataset's shapes.
    Only models that declare `takes_tokens` read token ids (text), and they read nothing else; a vocabulary
    (word pairs) sizes their embeddings. Models that declare `reads_features` get the dataset's named column
    groups `features` (with any the model config names itself, `model.features`, added) and its output `heads`
    (each target's output width, by name, when a table has several targets of different kinds)."""
    kw = dict(model_cfg)
    name = kw.pop("name")
    kw.pop("task", None)
    if tokens != is_token_model(MODELS.get(name)):
        raise DlrunError(f"model={name} does not fit dataset={dataset}: " + (
            "it gives token ids (text), which model=charlm (dataset=text), model=word2vec (dataset=skipgram) or "
            "model=seq2seq (dataset=pairs) reads." if tokens else f"model={name} reads token ids, from a text dataset."))
    if vocab is not None:
        kw["vocab_size"] = len(vocab)
    if reads_features(MODELS.get(name)):
        kw["features"] = {**(features or {}), **(kw.get("features") or {})} or None
        kw["heads"] = heads
    return create_model(name, input_shape=input_shape, num_outputs=num_outputs, **kw)
