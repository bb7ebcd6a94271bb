"""Where a run computes and how it is made repeatable: the device, seeds, GPU math settings, versions."""
from __future__ import annotations

import os
import platform
import random

import numpy as np
import torch

import dlrun
from dlrun.errors import DlrunError


def resolve_device(name: str) -> torch.device:
    """`device=auto` tries cuda, then mps, then cpu; a device this machine lacks is a clear error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise DlrunError(f"device={name!r} is not a device: {exc}. Use auto, cpu, cuda, cuda:N or mps.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DlrunError(f"device={name} was asked for but this machine has no CUDA GPU; use device=auto or cpu.")
    return device


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    # set both ways (API runs share one process), but only on change: the call imports torch._inductor (2 s)
    if torch.are_deterministic_algorithms_enabled() != deterministic:
        torch.use_deterministic_algorithms(deterministic)
    if deterministic:
        torch.backends.cudnn.benchmark = False
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def set_backends(device: torch.device, tf32: bool, cudnn_benchmark: bool, deterministic: bool) -> None:
    """GPU math settings: TF32 matmuls and convolutions (Ampere and later: ~8x the fp32 rate at a
    10-bit mantissa), cuDNN autotuning (picks the fastest kernel per shape; not with deterministic)."""
    if device.type != "cuda":
        return
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = cudnn_benchmark and not deterministic


def versions() -> dict:
    import hydra

    return {"dlrun": dlrun.__version__, "python": platform.python_version(), "torch": torch.__version__,
            "hydra": hydra.__version__, "numpy": np.__version__}
