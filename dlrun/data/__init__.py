"""Datasets as tensors in memory (sliced per batch on the device) and the loaders that serve them."""
from dlrun.data.bundle import DataBundle, Split, build_dataset

__all__ = ["DataBundle", "Split", "build_dataset"]
