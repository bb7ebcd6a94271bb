"""What every dataset builder returns: three splits plus what a model needs to adapt to them."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from omegaconf import DictConfig, OmegaConf

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

    def __post_init__(self):
        shape = (1, -1) + (1,) * (len(self.input_shape) - 1)
        self._mean = torch.tensor(self.mean, dtype=torch.float32).view(shape)
        self._std = torch.tensor(self.std, dtype=torch.float32).view(shape)

    def to(self, device, splits: bool = True) -> "DataBundle":
        """Move the normalisation stats, and the splits too unless a DataLoader will serve them."""
        if splits:
            self.train, self.val, self.test = (s.to(device) for s in (self.train, self.val, self.test))
        self._mean, self._std = self._mean.to(device), self._std.to(device)
        return self

    def describe(self) -> dict:
        """What it takes to prepare new inputs as this data's were, without the data (for checkpoints)."""
        return {"input_shape": list(self.input_shape), "input_dtype": str(self.train.x.dtype).removeprefix("torch."),
                "num_outputs": self.num_outputs, "tokens": self.tokens, "scale": self.scale, "mean": self.mean,
                "std": self.std, "classes": self.classes, "vocab": self.vocab}

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Raw batch -> normalised float batch. Done per batch so images can stay uint8 (4x less memory)."""
        if self.tokens:
            return x
        return (x.float() / self.scale - self._mean) / self._std


def standardise_stats(x: torch.Tensor, scale: float) -> tuple[list[float], list[float]]:
    """Per-channel (dim 1) mean and std of the training inputs, after dividing by `scale`."""
    xf = x.float() / scale
    dims = [d for d in range(xf.dim()) if d != 1] if xf.dim() > 2 else [0]
    mean, std = xf.mean(dim=dims), xf.std(dim=dims).clamp_min(1e-6)
    return mean.flatten().tolist(), std.flatten().tolist()


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
    for key in ("in_memory", "num_workers", "augment"):  # loader and training settings, not the builder's
        kwargs.pop(key, None)
    fn = DATASETS.get(name)
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
