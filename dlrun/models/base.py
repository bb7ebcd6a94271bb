"""What a model can do beyond its forward, declared by the model: the base class `Model` and its hooks.

A model that needs a hook subclasses `Model` and says so with a class attribute or by overriding a method;
the trainer and the tasks read them through the functions below (`isinstance`, never `hasattr`). Any other
`nn.Module` (a plugin's `nn.Sequential`, say) gets the defaults.

| hook | declared by | used for |
|---|---|---|
| `takes_tokens` | class attribute | reads integer token ids (text), fed as they are, never normalised (charlm, word2vec) |
| `updates_itself`, `train_step(x, optimizer)` | class attribute + method | the model makes its own update (the GAN's two steps) |
| `param_groups(lr)` | method | the optimizer's parameter groups, e.g. own learning rates for head and backbone (tv) |
| `aux_loss` | attribute its forward sets | a term added to the loss, Keras' `add_loss` (the VAE's KL) |
| `can_sample`, `sample(...)` | class attribute + method | new inputs: images from the prior (VAE), text after a prompt (charlm) |
| `embeddings()` | method | one vector per vocabulary entry, written after the test (word2vec) |
| `reads_features` | class attribute | the builder takes `features`, the dataset's named column groups (graph) |
| `summary_rows(input_shape)` | method | `dlrun summary`'s table as (node, inputs, output shape, parameters) rows (graph) |
| `output` | class attribute | what forward gives per input, checked against `Task.model_output`: "vector", "pixels" (unet), "grid" (yolov1) |
| `not_a_graph` | class attribute | why forward cannot be exported as a graph (ONNX, TorchScript, pt2), or "" (seq2seq: a search loop) |
"""
from __future__ import annotations

from typing import ClassVar, Iterable

import torch
from torch import nn


class Model(nn.Module):
    """An nn.Module with dlrun's optional hooks; each default means "this model does not do that"."""

    takes_tokens: ClassVar[bool] = False
    updates_itself: ClassVar[bool] = False
    can_sample: ClassVar[bool] = False
    reads_features: ClassVar[bool] = False  # the builder takes `features={group: [column indices]}`
    output: ClassVar[str] = "vector"  # per input: "vector" (scores or values) | "pixels" ((classes, H, W) scores) | "grid" (YOLO)
    not_a_graph: ClassVar[str] = ""  # why `dlrun export` cannot write forward as a graph; "" if it can
    aux_loss: torch.Tensor | None = None  # set by forward when the model adds a term to the loss

    def __init_subclass__(cls, **kwargs):
        """A model that declares `updates_itself` must define `train_step(x, optimizer)` (update the weights for one
        batch, return the detached loss); one that declares `can_sample` must define `sample(...)`. Checked when
        the class is defined, so a half-declared model never reaches the trainer."""
        super().__init_subclass__(**kwargs)
        for flag, method in (("updates_itself", "train_step"), ("can_sample", "sample")):
            if getattr(cls, flag) and not callable(getattr(cls, method, None)):
                raise TypeError(f"{cls.__name__} declares {flag} = True but defines no {method}()")

    def param_groups(self, lr: float | None) -> Iterable:
        """The optimizer's parameter groups (`lr`: optimizer.lr); by default all parameters, one group."""
        return self.parameters()

    def embeddings(self) -> torch.Tensor | None:
        """(vocabulary, dim) vectors to write after the test, or None."""
        return None

    def summary_rows(self, input_shape: tuple[int, ...], device="cpu") -> list[tuple[str, str, str, int]] | None:
        """The summary as (node, its inputs, output shape, parameters) rows, or None for the per-layer table."""
        return None


def is_token_model(builder) -> bool:
    """Whether a registered builder (a Model class or a function) reads token ids."""
    return isinstance(builder, type) and issubclass(builder, Model) and builder.takes_tokens


def reads_features(builder) -> bool:
    """Whether a registered builder (a Model class or a function) takes the dataset's feature groups."""
    return isinstance(builder, type) and issubclass(builder, Model) and builder.reads_features


def output_kind(builder) -> str:
    """What a registered builder's models give per input: "pixels" (a score per class and pixel) or "vector"
    (anything else, the default of a plain nn.Module)."""
    return builder.output if isinstance(builder, type) and issubclass(builder, Model) else "vector"


def takes_tokens(model: nn.Module) -> bool:
    return isinstance(model, Model) and model.takes_tokens


def updates_itself(model: nn.Module) -> bool:
    return isinstance(model, Model) and model.updates_itself


def can_sample(model: nn.Module) -> bool:
    return isinstance(model, Model) and model.can_sample


def param_groups(model: nn.Module, lr: float | None) -> Iterable:
    return model.param_groups(lr) if isinstance(model, Model) else model.parameters()


def aux_loss(model: nn.Module) -> torch.Tensor | None:
    return model.aux_loss if isinstance(model, Model) else None


def embeddings(model: nn.Module) -> torch.Tensor | None:
    return model.embeddings() if isinstance(model, Model) else None


def not_a_graph(model: nn.Module) -> str:
    return model.not_a_graph if isinstance(model, Model) else ""


def summary_rows(model: nn.Module, input_shape: tuple[int, ...], device="cpu") -> list[tuple] | None:
    return model.summary_rows(input_shape, device) if isinstance(model, Model) else None
