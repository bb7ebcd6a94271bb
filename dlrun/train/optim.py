"""Optimizers and learning-rate schedules by name, built from torch.optim (never re-implemented)."""
from __future__ import annotations

import torch
from omegaconf import DictConfig, OmegaConf

from dlrun.errors import DlrunError
from dlrun.registry import OPTIMIZERS, SCHEDULERS, register_optimizer, register_scheduler

register_optimizer("sgd", "stochastic gradient descent; momentum and nesterov are options (torch.optim.SGD)")(torch.optim.SGD)
register_optimizer("adam", "Adam, Kingma & Ba 2014 (torch.optim.Adam)")(torch.optim.Adam)
register_optimizer("adamw", "Adam with decoupled weight decay (torch.optim.AdamW)")(torch.optim.AdamW)
register_optimizer("adagrad", "per-parameter rates from summed squared gradients (torch.optim.Adagrad)")(torch.optim.Adagrad)
register_optimizer("adadelta", "Adagrad without a global learning rate to tune (torch.optim.Adadelta)")(torch.optim.Adadelta)
register_optimizer("rmsprop", "rates from a moving average of squared gradients (torch.optim.RMSprop)")(torch.optim.RMSprop)


def _kwargs(cfg: DictConfig) -> tuple[str, dict]:
    kw = OmegaConf.to_container(cfg, resolve=True)
    return kw.pop("name"), kw


def build_optimizer(cfg: DictConfig, params) -> torch.optim.Optimizer:
    name, kw = _kwargs(cfg)
    for key in ("betas",):  # YAML lists -> the tuples torch expects
        if key in kw:
            kw[key] = tuple(kw[key])
    try:
        return OPTIMIZERS.get(name)(params, **kw)
    except (TypeError, ValueError) as exc:
        raise DlrunError(f"optimizer '{name}' rejected its settings: {exc}") from exc


@register_scheduler("none")
def constant(optimizer, epochs: int, steps_per_epoch: int):
    """constant learning rate"""
    return None


@register_scheduler("step")
def step(optimizer, epochs: int, steps_per_epoch: int, step_size: int = 10, gamma: float = 0.1):
    """multiply the rate by gamma every step_size epochs (StepLR)"""
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=gamma)


@register_scheduler("exponential")
def exponential(optimizer, epochs: int, steps_per_epoch: int, gamma: float = 0.95):
    """multiply the rate by gamma every epoch (ExponentialLR)"""
    return torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=gamma)


@register_scheduler("inverse_time")
def inverse_time(optimizer, epochs: int, steps_per_epoch: int, decay: float = 0.1):
    """inverse-time decay lr_t = lr_0 / (1 + decay * t), t in epochs (LambdaLR)"""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: 1.0 / (1.0 + decay * t))


@register_scheduler("cosine")
def cosine(optimizer, epochs: int, steps_per_epoch: int, min_lr: float = 0.0):
    """cosine annealing from lr to min_lr over the run (CosineAnnealingLR)"""
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs, eta_min=min_lr)


@register_scheduler("plateau")
def plateau(optimizer, epochs: int, steps_per_epoch: int, factor: float = 0.1, patience: int = 5):
    """divide the rate when val_loss stops improving (ReduceLROnPlateau)"""
    return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=factor, patience=patience)


@register_scheduler("warmup_cosine")
def warmup_cosine(optimizer, epochs: int, steps_per_epoch: int, warmup_epochs: int = 2, start_factor: float = 0.01,
                  min_lr: float = 0.0):
    """linear warm-up, then cosine annealing; per step (LinearLR then CosineAnnealingLR)"""
    warm = max(1, min(warmup_epochs, epochs - 1) * steps_per_epoch) if epochs > 1 else 1
    total = max(epochs * steps_per_epoch, warm + 1)
    S = torch.optim.lr_scheduler
    return S.SequentialLR(optimizer, [S.LinearLR(optimizer, start_factor, 1.0, total_iters=warm),
                                      S.CosineAnnealingLR(optimizer, T_max=total - warm, eta_min=min_lr)], [warm])


def build_scheduler(cfg: DictConfig, optimizer, epochs: int, steps_per_epoch: int):
    """The scheduler (or None) and whether it steps per 'epoch' or per 'step'."""
    name, kw = _kwargs(cfg)
    interval = kw.pop("interval", "epoch")
    try:
        return SCHEDULERS.get(name)(optimizer, epochs, steps_per_epoch, **kw), interval
    except (TypeError, ValueError) as exc:
        raise DlrunError(f"scheduler '{name}' rejected its settings: {exc}") from exc
