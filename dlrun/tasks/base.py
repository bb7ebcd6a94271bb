"""What is being learned decides the last layer, the loss, the metrics and what is written after the test
(seed 004's table). One class per task, one file each in this package, registered by name with
`@register_task`; outside these classes no code asks which task it is.

| task           | targets                  | last layer       | loss (default first) |
|----------------|--------------------------|------------------|----------------------|
| multiclass     | one class index          | softmax          | cross_entropy        |
| binary         | 0 or 1                   | sigmoid          | bce, mse             |
| multilabel     | several 0/1 per sample   | sigmoid          | bce                  |
| regression     | real numbers             | linear           | mse, mae, huber      |
| reconstruction | the input itself         | linear           | mse, mae             |
| next_token     | the next token, per step | softmax per step | cross_entropy        |
| generation     | real inputs (to compare) | a new input      | mmd (scores only)    |
| multioutput    | one column per target    | one head each    | each head's own      |
| seq2seq        | a token sequence         | softmax per step | cross_entropy        |
| segmentation   | a class per pixel        | pixel softmax    | cross_entropy, ce_dice |
| detection      | boxes per image          | YOLO v1 grid     | yolo                 |

Models output raw scores (logits); the softmax or sigmoid lives inside the loss (`CrossEntropyLoss`,
`BCEWithLogitsLoss`), the numerically stable form of the same thing.
"""
from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path
from typing import Callable, ClassVar

import torch
from torch import nn

from dlrun.errors import DlrunError
from dlrun.models.base import embeddings
from dlrun.registry import TASKS
from dlrun.train.checkpoint import atomic_write

LOSSES: dict[str, Callable[[dict], nn.Module]] = {  # loss=NAME -> the torch.nn loss, from loss.* options
    "cross_entropy": lambda o: nn.CrossEntropyLoss(  # each class's weight (trainer.class_weight), if given
        weight=None if o.get("class_weight") is None else torch.tensor(o["class_weight"], dtype=torch.float32),
        label_smoothing=o.get("label_smoothing", 0.0)),
    "bce": lambda o: nn.BCEWithLogitsLoss(), "mse": lambda o: nn.MSELoss(), "mae": lambda o: nn.L1Loss(),
    "huber": lambda o: nn.HuberLoss(delta=o.get("delta", 1.0)),
}


@dataclasses.dataclass
class Artifacts:
    """What a task's files after the test are made from."""

    model: nn.Module
    data: object  # the DataBundle
    outputs: list  # (outputs, targets) per test batch, as the test pass computed them
    run_dir: Path
    plotter: object  # dlrun.plotter.Plotter
    title: str  # "MODEL on DATASET"
    seed: int
    say: Callable[[str], None]  # a line for the console (a no-op when it is off)


class Task:
    """A task: its losses, the target of a batch, predictions for accuracy, test metrics and artifacts."""

    name: ClassVar[str]
    losses: ClassVar[tuple[str, ...]]  # the losses that fit; the first is loss=auto's
    classification: ClassVar[bool] = False  # accuracy is tracked per step and per epoch
    target_is_input: ClassVar[bool] = False  # the target is the (normalised) input, taken before augmentation
    weighs_classes: ClassVar[bool] = False  # takes trainer.class_weight (one weight per class in the loss)
    model_output: ClassVar[str] = "vector"  # what the model must give per input (dlrun.models.base.output_kind)
    headline: ClassVar[str | None] = None  # the test metric sweeps and reports show first; None: test_accuracy or loss

    def __init__(self, loss_name: str, loss_fn: nn.Module, data: dict | None = None,
                 class_weight: list[float] | None = None):
        self.loss_name, self.loss_fn = loss_name, loss_fn
        # (mean, std) of values standardised for training (a table's regression), to report them in their own units
        self.target_scale = (data or {}).get("target_scale")
        self.class_weight = class_weight  # each class's weight in the loss (trainer.class_weight), or None

    # ---- building ------------------------------------------------------------------------------
    @classmethod
    def build(cls, loss: dict, num_outputs: int, data: dict | None = None,
              class_weight: list[float] | None = None) -> "Task":
        """The task with its loss (`loss`: the loss config); a loss that cannot fit is refused, saying why.
        `data`: the data's description (`DataBundle.describe()`, a checkpoint's meta), for what the targets need
        (the scale values were standardised with, a table's output heads); `class_weight`: each class's weight
        in the loss (resolved by `class_weights`)."""
        options = dict(loss)
        name = options.pop("name")
        name = cls.losses[0] if name == "auto" else name
        if name not in cls.losses:
            raise DlrunError(f"loss={name} does not fit task={cls.name}: {cls.loss_hint(name, num_outputs)}.")
        if class_weight is not None:
            options["class_weight"] = class_weight
        return cls(name, cls.make_loss(name, options, num_outputs), data, class_weight)

    @classmethod
    def class_weights(cls, spec, y: torch.Tensor, classes: int) -> list[float] | None:
        """trainer.class_weight as one weight per class: as given, or `balanced` from the training targets' counts
        (n / (classes * count), scikit-learn's and Keras' formula)."""
        if spec is None:
            return None
        if not cls.weighs_classes:
            raise DlrunError(f"trainer.class_weight weighs classes in the loss; task={cls.name} has no classes to weigh.")
        if spec == "balanced":
            counts = torch.bincount(y.flatten().long().cpu(), minlength=classes).double()
            return (counts.sum() / (classes * counts.clamp_min(1))).tolist()
        if len(spec) != classes:
            raise DlrunError(f"trainer.class_weight has {len(spec)} weights; this data has {classes} classes.")
        return [float(w) for w in spec]

    @classmethod
    def loss_hint(cls, name: str, num_outputs: int) -> str:
        return f"task={cls.name} takes loss={' or '.join(cls.losses)}"

    @classmethod
    def make_loss(cls, name: str, options: dict, num_outputs: int) -> nn.Module:
        return LOSSES[name](options)

    @classmethod
    def model_outputs(cls, input_shape: tuple, num_outputs: int) -> int:
        """How many outputs the model needs for data with these shapes (the input's size when it is the target)."""
        return math.prod(input_shape) if cls.target_is_input else num_outputs

    @classmethod
    def adapt(cls, data) -> None:
        """Shape the data's targets for this task, or refuse data whose targets cannot be this task's."""
        if cls.target_is_input:  # the input is the target; the labels stay (for plots and studies)
            data.num_outputs, data.task = cls.model_outputs(data.input_shape, data.num_outputs), cls.name
        if data.task != cls.name:
            raise DlrunError(f"task={cls.name} does not fit the {data.task} targets of this dataset; "
                             f"leave task unset to use {data.task}.")

    # ---- training ------------------------------------------------------------------------------
    def target(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """What the output is compared with: the labels, or the normalised input itself."""
        return x if self.target_is_input else y

    def from_column(self, column: torch.Tensor) -> torch.Tensor:
        """This task's targets from one float column (a head of several targets): (N, 1) by default."""
        return column.unsqueeze(1)

    def predict(self, out: torch.Tensor) -> torch.Tensor:
        """The predictions that accuracy counts (classification tasks)."""
        return out

    @staticmethod
    def hits(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per sample: 1 for a right prediction (several labels or steps: the fraction right), else 0."""
        hit = (pred == y).float()
        return hit.mean(dim=1) if hit.dim() > 1 else hit

    def correct(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Right predictions in a batch, on the device."""
        return self.hits(self.predict(out), y).sum()

    # ---- after training --------------------------------------------------------------------------
    def metrics(self, out: torch.Tensor, y: torch.Tensor, classes: list[str] | None) -> tuple[dict, dict]:
        """(test metrics by name, other summary entries) from the whole test split's outputs and targets."""
        return {}, {}

    def artifacts(self, a: Artifacts, summary: dict) -> None:
        """The task's own files after the test (a confusion matrix, reconstructions, samples)."""

    def decode(self, out: torch.Tensor, classes: list[str] | None, top_k: int = 3) -> list[dict]:
        """One prediction per row of outputs, as `dlrun predict` writes it; by default the raw outputs."""
        return [{"output": row.tolist()} for row in out]

    def write_files(self, out: torch.Tensor, names: list[str], folder: Path) -> list[Path]:
        """`dlrun predict --out`'s files beside its table, one per input named in `names` (a segmentation's mask
        PNGs), into `folder`; by default none. Returns the files written."""
        return []

    def write_artifacts(self, a: Artifacts, summary: dict) -> None:
        """The task's files, then those of the model's own hooks (word embeddings)."""
        self.artifacts(a, summary)
        vectors = embeddings(a.model)
        if vectors is not None and a.data.vocab is not None:
            summary["neighbours"] = write_embeddings(vectors, a.data.vocab, a.run_dir)


def per_input_paths(names: list[str], folder: Path, ending: str) -> list[Path]:
    """One file in `folder` per input, named after it (`NAME` + `ending`, e.g. "_mask.png"): characters a file
    name should not hold become "_", and the same name from two folders gets a number."""
    folder.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for name in names:
        stem = re.sub(r"[^\w.-]+", "_", Path(name).stem if Path(name).suffix else name).strip("_") or "input"
        path, n = folder / f"{stem}{ending}", 1
        while path in paths:
            n += 1
            path = folder / f"{stem}_{n}{ending}"
        paths.append(path)
    return paths


def register_task(cls: type[Task]) -> type[Task]:
    """Class decorator: the task is found as task=NAME (its `name`), its docstring's first line describes it."""
    TASKS.register(cls.name)(cls)
    return cls


def build_task(name: str, loss: dict, num_outputs: int, data: dict | None = None,
               class_weight: list[float] | None = None) -> Task:
    """The task called `name` with its loss."""
    return TASKS.get(name).build(loss, num_outputs, data, class_weight)


def nearest(vectors: torch.Tensor, ids: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k rows of `vectors` closest in cosine similarity to each row in `ids` (itself excluded):
    (similarities, indices), each (len(ids), k)."""
    unit = nn.functional.normalize(vectors.float(), dim=1)
    sims = unit[ids] @ unit.T
    sims[torch.arange(len(ids)), ids] = -2.0  # never a row's own neighbour
    return sims.topk(k, dim=1)


def write_embeddings(vectors: torch.Tensor, vocab: list[str], run_dir: Path, top: int = 10, k: int = 5) -> dict:
    """embeddings.tsv (a word and its vector per line) and neighbours.txt (the `k` nearest words, by cosine
    similarity, of the `top` most frequent ones); returns those neighbours for the summary."""
    vectors = vectors.detach().float().cpu()
    lines = [w + "\t" + "\t".join(f"{v:.5g}" for v in vec.tolist()) for w, vec in zip(vocab, vectors)]
    atomic_write(run_dir / "embeddings.tsv", lambda f: f.write(("\n".join(lines) + "\n").encode()), durable=False)
    ids = torch.arange(min(top, len(vocab)))
    sims, near = nearest(vectors, ids, min(k, len(vocab) - 1))
    found = {vocab[i]: [vocab[j] for j in row] for i, row in zip(ids.tolist(), near.tolist())}
    text = "".join(neighbour_line(w, found[w], srow) + "\n" for w, srow in zip(found, sims.tolist()))
    atomic_write(run_dir / "neighbours.txt", lambda f: f.write(text.encode()), durable=False)
    return found


def neighbour_line(word: str, neighbours: list[str], similarities: list[float]) -> str:
    """'word: near (0.91), nearer (0.88)', as neighbours.txt and `dlrun predict --text` show a word's neighbours."""
    return f"{word}: " + ", ".join(f"{n} ({s:.2f})" for n, s in zip(neighbours, similarities))


def is_image(shape: tuple) -> bool:
    """Whether inputs of this shape are images a grid can show: (C, H, W) with one or three channels."""
    return len(shape) == 3 and shape[0] in (1, 3)
