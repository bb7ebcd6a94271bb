"""Image datasets through torchvision's own loaders: Fashion-MNIST, MNIST, CIFAR-10/100.

Fashion-MNIST is taken from Debian's `dataset-fashion-mnist` package when it is installed.
Everything else uses torchvision's download code; offline, it fails with a message naming
the folder and the files to put there.
"""
from __future__ import annotations

import gzip
import math
import os
import shutil
import struct
import zlib
from pathlib import Path

import torch

from dlrun.data.bundle import DataBundle, Split, standardise_stats, stratified_split
from dlrun.data.cache import data_root
from dlrun.errors import DlrunError
from dlrun.registry import register_dataset

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def _root(root: str | None) -> Path:
    return Path(os.path.expanduser(root)) if root else data_root()


def _stage_idx(src: Path, raw: Path) -> None:
    """Unpack IDX `.gz` files from `src` into torchvision's `raw/` folder (once)."""
    raw.mkdir(parents=True, exist_ok=True)
    for name in IDX_FILES:
        if (raw / name).exists():
            continue
        tmp = raw / f".{name}.tmp"
        try:
            with gzip.open(src / f"{name}.gz", "rb") as fin, open(tmp, "wb") as fout:
                shutil.copyfileobj(fin, fout)
        except (OSError, EOFError, zlib.error) as exc:
            tmp.unlink(missing_ok=True)
            raise DlrunError(f"{src / name}.gz cannot be unpacked ({type(exc).__name__}: {exc}); it is missing, "
                             "truncated or corrupted. Replace it with a good copy and run again.", exit_code=3) from None
        os.replace(tmp, raw / name)


def check_idx(path: Path) -> None:
    """An IDX file (MNIST's format) must be exactly as long as its header says: else name it."""
    with open(path, "rb") as f:
        head = f.read(4)
        dims = struct.unpack(f">{head[3]}I", f.read(4 * head[3])) if len(head) == 4 and head[2] == 8 else None
    expected = 4 + 4 * len(dims) + math.prod(dims) if dims else None
    size = path.stat().st_size
    if expected != size:
        why = f"{size} bytes where its header announces {expected}" if expected else "no valid IDX header"
        raise DlrunError(f"{path} is corrupted or truncated ({why}). Delete it (dlrun unpacks or downloads it "
                         "again) or replace it with a good copy.", exit_code=3)


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
    for name in IDX_FILES:  # torchvision would fail on a truncated file without naming it
        if (root / cls.__name__ / "raw" / name).exists():
            check_idx(root / cls.__name__ / "raw" / name)
    train, test = _load(cls, root, download, "the four IDX files (" + ", ".join(f"{f}.gz" for f in IDX_FILES) + ")")
    return _bundle(train.data.unsqueeze(1), train.targets.long(), test.data.unsqueeze(1), test.targets.long(),
                   val_split, split_seed, classes or train.classes)


@register_dataset("fashion_mnist")
def fashion_mnist(root: str | None = None, download: bool = True, val_split: float = 0.1, split_seed: int = 0):
    """Zalando's Fashion-MNIST, 28x28 grey clothes in 10 classes (Debian package or download)."""
    from torchvision.datasets import FashionMNIST

    root = _root(root)
    if not all((root / "FashionMNIST" / "raw" / name).exists() for name in IDX_FILES):
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
