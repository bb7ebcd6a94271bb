"""What every dataset builder returns: three splits plus what a model needs to adapt to them."""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field

import torch
from omegaconf import DictConfig, OmegaConf

from dlrun.data.normalise import Normalise
from dlrun.errors import DlrunError
from dlrun.registry import DATASETS


@dataclass
class Split:
    """Inputs `x` (uint8 images or float features) and targets `y`, kept as whole tensors."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)

    def to(self, device) -> "Split":
        return Split(self.x.to(device), self.y.to(device))


@dataclass
class DataBundle:
    train: Split
    val: Split
    test: Split
    input_shape: tuple[int, ...]
    num_outputs: int  # classes for classification, target dimension for regression
    task: str = "multiclass"  # multiclass | regression
    scale: float = 1.0  # raw x is divided by this (255 for uint8 images) ...
    mean: list[float] = field(default_factory=lambda: [0.0])  # ... then standardised per channel
    std: list[float] = field(default_factory=lambda: [1.0])
    classes: list[str] | None = None
    tokens: bool = False  # x holds token ids (text): fed to the model as they are, never normalised
    vocab: list[str] | None = None  # the words behind the token ids (skipgram), most frequent first
    features: dict[str, list[int]] | None = None  # named groups of a flat feature vector (a table's columns)
    table: dict | None = None  # how a table's rows become features (dlrun/data/tabular.py), to prepare new rows
    target_scale: tuple[list[float], list[float]] | None = None  # values standardised for training: (mean, std)
    heads: list[dict] | None = None  # several targets of different kinds: each one's name, task, width, classes, scale
    text: dict | None = None  # how text becomes token ids (dataset=pairs: tokens, lowercase, lengths), for new text
    notes: list[str] = field(default_factory=list)  # what building the data did that the user should know
    # other targets of the same inputs, by the task that reads them: [train, val, test] (a canvas's boxes for
    # task=detection, while y holds its masks); the task's `adapt` puts them in y
    targets: dict[str, list[torch.Tensor]] | None = None

    def __post_init__(self):
        self.normalise = Normalise(self.input_shape, self.scale, self.mean, self.std, self.tokens)

    def to(self, device, splits: bool = True) -> "DataBundle":
        """Move the normalisation stats, and the splits too unless a DataLoader will serve them."""
        if splits:
            self.train, self.val, self.test = (s.to(device) for s in (self.train, self.val, self.test))
        self.normalise.to(device)
        return self

    def describe(self) -> dict:
        """What it takes to prepare new inputs as this data's were, without the data (for checkpoints)."""
        return {"input_shape": list(self.input_shape), "input_dtype": str(self.train.x.dtype).removeprefix("torch."),
                "num_outputs": self.num_outputs, "tokens": self.tokens, "scale": self.scale, "mean": self.mean,
                "std": self.std, "classes": self.classes, "vocab": self.vocab, "features": self.features,
                "table": self.table, "target_scale": self.target_scale, "heads": self.heads, "text": self.text}

    def head_sizes(self) -> dict[str, int] | None:
        """Each output head's width by its target's name (several targets of different kinds), else None."""
        return {h["name"]: h["width"] for h in self.heads} if self.heads else None

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Raw batch -> what the model takes. Done per batch so images can stay uint8 (4x less memory);
        `forward` directly: nn.Module's call machinery (hooks) costs microseconds a step for nothing here."""
        return self.normalise.forward(x)


def standardise_stats(x: torch.Tensor, scale: float, chunk: int = 4096) -> tuple[list[float], list[float]]:
    """Per-channel (dim 1) mean and (unbiased) std of the training inputs, after dividing by `scale`; features
    one by one for flat inputs. Summed in float64 over chunks of samples, straight from the stored (uint8) data:
    a float copy of a whole training set (170 MB for Fashion-MNIST) is never made."""
    dims = [d for d in range(x.dim()) if d != 1] if x.dim() > 2 else [0]
    s1 = s2 = 0.0
    for start in range(0, len(x), chunk):
        part = x[start:start + chunk].double() / scale
        s1, s2 = s1 + part.sum(dim=dims), s2 + part.square().sum(dim=dims)
    n = x.numel() // (x.shape[1] if x.dim() > 1 else 1)
    mean = s1 / n
    std = ((s2 - n * mean.square()) / max(n - 1, 1)).clamp_min(0).sqrt().clamp_min(1e-6)
    return mean.float().flatten().tolist(), std.float().flatten().tolist()


def stratified_split(y: torch.Tensor, fractions: list[float], seed: int, stratify: bool = True) -> list[torch.Tensor]:
    """Index tensors splitting `len(y)` items into parts of the given fractions, seeded and per class."""
    g = torch.Generator().manual_seed(seed)
    groups = [torch.nonzero(y == c).flatten() for c in torch.unique(y)] if stratify else [torch.arange(len(y))]
    parts: list[list[torch.Tensor]] = [[] for _ in fractions]
    for idx in groups:
        idx = idx[torch.randperm(len(idx), generator=g)]
        bounds = [round(len(idx) * sum(fractions[:i + 1])) for i in range(len(fractions) - 1)]
        for i, chunk in enumerate(torch.tensor_split(idx, bounds)):
            parts[i].append(chunk)
    return [torch.sort(torch.cat(p)).values for p in parts]


def build_dataset(cfg: DictConfig) -> DataBundle:
    """Build the dataset named by `cfg.name` with the remaining keys as arguments."""
    kwargs = OmegaConf.to_container(cfg, resolve=True)
    name = kwargs.pop("name")
    fn = DATASETS.get(name)
    takes = inspect.signature(fn).parameters
    for key in ("in_memory", "num_workers", "augment"):  # loader and training settings: only for builders that
        if key not in takes:                              # prepare differently for them (streaming to a file)
            kwargs.pop(key, None)
    try:
        data = fn(**kwargs)
    except TypeError as exc:
        raise DlrunError(f"dataset '{name}' could not be built: {exc}") from exc
    check_split_sizes(data, name)
    return data


MIN_SPLIT = {"train": 2, "val": 1, "test": 1}  # two to train (a spread to standardise by), one to score


def check_split_sizes(data: DataBundle, name: str) -> None:
    """Too little data for the splits is a config error that says the minimum, not a division by zero later."""
    sizes = {"train": len(data.train), "val": len(data.val), "test": len(data.test)}
    short = [s for s, n in sizes.items() if n < MIN_SPLIT[s]]
    if short:
        raise DlrunError(f"dataset={name} gives {sizes['train']} training, {sizes['val']} validation and {sizes['test']} "
                         f"test samples; each run needs at least {MIN_SPLIT['train']} training, {MIN_SPLIT['val']} "
                         f"validation and {MIN_SPLIT['test']} test sample(s). Use more data (e.g. dataset.n_samples) or "
                         f"larger fractions for {' and '.join(f'dataset.{s}_split' for s in short if s != 'train') or 'the splits'}.")
