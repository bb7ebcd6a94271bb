"""Whether a metric is better lower (losses, errors, perplexity, times) or higher (accuracy, F1, R²), from
its name: the one rule that checkpoints, early stopping, reports and searches share. Torch-free."""
from __future__ import annotations

LOWER_IS_BETTER = ("loss", "mse", "mae", "error", "time", "perplexity", "bits_per", "mmd")


def lower_is_better(name: str) -> bool:
    return any(word in name for word in LOWER_IS_BETTER)


def mode_for(name: str) -> str:
    """'min' or 'max', as torch's ReduceLROnPlateau and Keras' callbacks say it."""
    return "min" if lower_is_better(name) else "max"
