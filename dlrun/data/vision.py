"""Image datasets through torchvision's own loaders: Fashion-MNIST, MNIST, CIFAR-10/100.

Fashion-MNIST is taken from Debian's `dataset-fashion-mnist` package when it is installed.
Everything else uses torchvision's download code; offline, it fails with a message naming
the folder and the files to put there.
"""
from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import torch

from dlrun.data.bundle import DataBundle, Split, standardise_stats, stratified_split
from dlrun.errors import DlrunError
from dlrun.registry import register_dataset

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def _root(root: str | None) -> Path:
    return Path(os.path.expanduser(root or os.environ.get("DLRUN_DATA", "~/.cache/dlrun/data")))


def _stage_idx(src: Path, raw: Path) -> None:
    """Unpack IDX `.gz` files from `src` into torchvision's `raw/` folder (once)."""
    raw.mkdir(parents=True, exist_ok=True)
    for name in IDX_FILES:
        if (raw / name).exists():
            continue
        tmp = raw / f".{name}.tmp"
        with gzip.open(src / f"{name}.gz", "rb") as fin, open(tmp, "wb") as fout:
            shutil.copyfileobj(fin, fout)
        os.replace(tmp, raw / name)


def _load(cls, root: Path, download: bool, files: str):
    """Both splits of a torchvision dataset, or a DlrunError that says where the files go."""
    try:
        return cls(str(root), train=True, download=download), cls(str(root), train=False, download=download)
    except Exception as exc:  # urllib/HTTP errors offline, RuntimeError("Dataset not found") otherwise
        folder = root / cls.__name__ / "raw" if "MNIST" in cls.__name__ else root
        raise DlrunError(
            f"{cls.__name__} is not in {folder} and could not be downloaded "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}).\n"
            f"Put {files} in {folder} (or set dataset.root=DIR), then run again.", exit_code=3) from exc


def _bundle(x_train, y_train, x_test, y_test, val_split, split_seed, classes) -> DataBundle:
    """uint8 NCHW tensors -> a DataBundle with a stratified validation split from train."""
    tr, va = stratified_split(y_train, [1 - val_split, val_split], split_seed)
    mean, std = standardise_stats(x_train[tr], 255.0)
    return DataBundle(Split(x_train[tr], y_train[tr]), Split(x_train[va], y_train[va]), Split(x_test, y_test),
                      input_shape=tuple(x_train.shape[1:]), num_outputs=len(classes), scale=255.0,
                      mean=mean, std=std, classes=list(classes))


def _mnist_like(cls, root, download, val_split, split_seed, classes=None):
    train, test = _load(cls, root, download, "the four IDX files (" + ", ".join(f"{f}.gz" for f in IDX_FILES) + ")")
    return _bundle(train.data.unsqueeze(1), train.targets.long(), test.data.unsqueeze(1), test.targets.long(),
                   val_split, split_seed, classes or train.classes)


@register_dataset("fashion_mnist")
def fashion_mnist(root: str | None = None, download: bool = True, val_split: float = 0.1, split_seed: int = 0):
    """Zalando's Fashion-MNIST, 28x28 grey clothes in 10 classes (Debian package or download)."""
    from torchvision.datasets import FashionMNIST

    root = _root(root)
    if not (root / "FashionMNIST" / "raw" / IDX_FILES[0]).exists():
        src = next((d for d in (root, root / "fashion-mnist", DEBIAN_FASHION_MNIST)
                    if (d / f"{IDX_FILES[0]}.gz").exists()), None)
        if src is not None:
            _stage_idx(src, root / "FashionMNIST" / "raw")
    return _mnist_like(FashionMNIST, root, download, val_split, split_seed, FASHION_CLASSES)


@register_dataset("mnist")
def mnist(root: str | None = None, download: bool = True, val_split: float = 0.1, split_seed: int = 0):
    """LeCun's MNIST handwritten digits, 28x28 grey (torchvision download)."""
    from torchvision.datasets import MNIST

    return _mnist_like(MNIST, _root(root), download, val_split, split_seed)


def _cifar(cls, root, download, val_split, split_seed, archive):
    train, test = _load(cls, _root(root), download, f"{archive} (or its extracted folder)")
    to_nchw = lambda a: torch.as_tensor(a).permute(0, 3, 1, 2).contiguous()  # noqa: E731
    return _bundle(to_nchw(train.data), torch.as_tensor(train.targets), to_nchw(test.data),
                   torch.as_tensor(test.targets), val_split, split_seed, train.classes)


@register_dataset("cifar10")
def cifar10(root: str | None = None, download: bool = True, val_split: float = 0.1, split_seed: int = 0):
    """CIFAR-10, 32x32 colour images in 10 classes (torchvision download)."""
    from torchvision.datasets import CIFAR10

    return _cifar(CIFAR10, root, download, val_split, split_seed, "cifar-10-python.tar.gz")


@register_dataset("cifar100")
def cifar100(root: str | None = None, download: bool = True, val_split: float = 0.1, split_seed: int = 0):
    """CIFAR-100, 32x32 colour images in 100 classes (torchvision download)."""
    from torchvision.datasets import CIFAR100

    return _cifar(CIFAR100, root, download, val_split, split_seed, "cifar-100-python.tar.gz")
