"""The schema of every config group: each key's type and allowed values, checked by `config.validate`.

One dataclass per group. A field's annotation is its type; `rng(check, allowed)` adds a range check
(applied to values of the right type, never to null) and the words a refusal shows. The values
themselves live in conf/*.yaml: the schemas hold no defaults. A key that a group's schema lacks is
refused unless the group takes extra keys (`EXTRA_KEYS`: model and dataset, whose plugins bring their
own keys, checked against the builder's signature) or the command line added it (`+KEY=VALUE`). Every key
of a schema must be present (`~trainer.epochs` is refused), except in the groups whose options differ in
their keys, which list the keys they all need in `REQUIRED`.
Nothing here imports torch.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import ClassVar, Literal, Optional, Union


def rng(check=None, allowed: str | None = None):
    """A field with a range check (value -> bool) and what is allowed, in words."""
    return field(metadata={"check": check, "allowed": allowed})


def positive_int(allowed: str = "a positive integer"):
    return rng(lambda v: v >= 1, allowed)


def at_least_0(allowed: str = "a number >= 0"):
    return rng(lambda v: v >= 0, allowed)


def above_0(allowed: str = "a number > 0"):
    return rng(lambda v: v > 0, allowed)


def fraction(allowed: str = "a number in [0, 1)"):
    return rng(lambda v: 0 <= v < 1, allowed)


@dataclass
class Checkpoint:
    monitor: str  # best.pt follows this metric


@dataclass
class EarlyStopping:
    patience: Optional[int] = positive_int("null (off) or a positive integer")
    monitor: str
    min_delta: float = at_least_0()


@dataclass
class Trainer:
    epochs: int = positive_int()
    batch_size: Union[int, Literal["full"]] = rng(lambda v: v == "full" or v >= 1, "a positive integer or 'full'")
    deterministic: bool
    log_every: int = positive_int()
    limit_batches: Optional[int] = positive_int("null or a positive integer")
    max_grad_norm: Optional[float] = above_0("null or a number > 0")
    clip_value: Optional[float] = above_0("null or a number > 0")
    on_nonfinite: Literal["stop", "skip"]
    checkpoint_every_steps: Optional[int] = positive_int("null or a positive integer")
    export_safetensors: bool
    # "32" is also accepted as the integer 32 (what `trainer.precision=32` parses to)
    precision: Literal["32", "bf16", "fp16", 32] = rng(allowed="32, bf16 or fp16")
    compile: bool
    channels_last: bool
    tf32: bool
    cudnn_benchmark: bool
    l1: float = at_least_0()
    l2: float = at_least_0()
    class_weight: Union[Literal["balanced"], list[float], None] = rng(
        lambda v: v == "balanced" or all(w >= 0 for w in v), "null, balanced, or a list of numbers >= 0 (one per class)")
    steps_per_epoch: int = positive_int()  # reinforcement learning (env=...): environment steps per epoch
    eval_episodes: int = positive_int()  # ... and greedy evaluation episodes after each
    summary: bool
    devices: int = positive_int()  # processes of one training (torch.distributed); torchrun sets its own
    strategy: Literal["ddp", "local_sgd", "param_server"]
    average_every: int = positive_int()  # local_sgd: optimizer steps between parameter averages
    slow_rank_delay_ms: float = at_least_0()  # the last rank sleeps this long after each step (the slowest worker)
    checkpoint: Checkpoint
    early_stopping: EarlyStopping


@dataclass
class Optimizer:
    """The keys of the built-in optimizers (torch.optim's arguments); others go in with +optimizer.KEY=VALUE."""

    REQUIRED: ClassVar[tuple] = ("name", "lr")

    name: str
    lr: float = above_0()
    weight_decay: float = at_least_0()
    eps: float = above_0()
    momentum: float = rng(lambda v: 0 <= v <= 1, "a number in [0, 1]")
    dampening: float = rng(lambda v: 0 <= v <= 1, "a number in [0, 1]")
    nesterov: bool
    betas: list[float] = rng(lambda v: len(v) == 2 and all(0 <= b < 1 for b in v), "two numbers in [0, 1)")
    rho: float = rng(lambda v: 0 <= v <= 1, "a number in [0, 1]")
    alpha: float = at_least_0()
    amsgrad: bool
    centered: bool
    maximize: bool
    lr_decay: float = at_least_0()
    initial_accumulator_value: float = at_least_0()


@dataclass
class Scheduler:
    REQUIRED: ClassVar[tuple] = ("name",)
    name: str
    interval: Literal["epoch", "step"]
    gamma: float = above_0()
    step_size: int = positive_int()
    min_lr: float = at_least_0()
    decay: float = at_least_0()
    factor: float = rng(lambda v: 0 < v < 1, "a number in (0, 1)")
    patience: int = rng(lambda v: v >= 0, "an integer >= 0")
    warmup_epochs: int = rng(lambda v: v >= 0, "an integer >= 0")
    start_factor: float = rng(lambda v: 0 < v <= 1, "a number in (0, 1]")


@dataclass
class Dataset:
    """The keys of the built-in datasets; a plugin dataset's own keys pass (its builder checks them)."""

    EXTRA_KEYS: ClassVar[bool] = True
    REQUIRED: ClassVar[tuple] = ("name",)
    name: str
    root: Optional[str]
    download: bool
    val_split: float = fraction()
    test_split: float = rng(lambda v: 0 < v < 1, "a number in (0, 1)")
    split_seed: int
    classes: Union[list[int], list[str], int, None]  # digits: a subset; dense_folder: the class names or count
    train_subset: Optional[int] = positive_int("null or a positive integer")
    in_memory: bool
    num_workers: int = rng(lambda v: v >= 0, "an integer >= 0")
    augment: Optional[list] = rng(allowed="a list, e.g. [rotation:10,hflip]")
    kind: Literal["moons", "circles", "student", "blobs", "multilabel", "regression",  # synthetic
                  "adding", "recall"]  # sequences
    n_samples: int = positive_int()
    noise: float = at_least_0()
    n_features: int = positive_int()
    centers: int = positive_int()
    n_labels: int = positive_int()
    length: int = rng(lambda v: v >= 2, "an integer >= 2")
    symbols: int = rng(lambda v: v >= 2, "an integer >= 2")
    path: Optional[str]
    max_mb: float = above_0()
    lowercase: bool
    window: int = positive_int()
    negatives: int = positive_int()
    min_count: int = positive_int()


@dataclass
class Env:
    """A gymnasium environment (reinforcement learning: env=NAME replaces the dataset); see dlrun/rl/env.py."""

    REQUIRED: ClassVar[tuple] = ("id",)
    id: str  # gymnasium's id, checked against its registry
    kwargs: Optional[dict]  # passed to gymnasium.make (FrozenLake: map_name, is_slippery)
    max_episode_steps: Optional[int] = positive_int("null or a positive integer")
    atari: bool  # Atari preprocessing (84x84 grey, frame skip 4, 4 frames stacked)
    test_episodes: int = positive_int()  # greedy episodes of the test pass


@dataclass
class Model:
    """The keys models share; each model's own keys pass (checked against its signature when it is built)."""

    EXTRA_KEYS: ClassVar[bool] = True
    REQUIRED: ClassVar[tuple] = ("name",)
    name: str
    dropout: float = fraction()
    init: str
    activation: str
    norm: Literal["none", "batch", "layer"]


@dataclass
class Loss:
    REQUIRED: ClassVar[tuple] = ("name",)
    name: Literal["auto", "cross_entropy", "bce", "mse", "mae", "huber", "mmd", "ce_dice", "yolo"]
    label_smoothing: float = fraction()
    dice_weight: float = at_least_0()  # ce_dice: the soft Dice term's weight beside the cross-entropy
    lambda_coord: float = at_least_0()  # yolo: weight of the box coordinates' errors
    lambda_noobj: float = at_least_0()  # yolo: weight of the confidence of boxes that hold no object
    rescore: bool  # yolo: a responsible box's confidence target is its IoU (true) or 1 (false)
    conf_threshold: float = fraction()  # yolo: a detection's least score (predict, boxes.png)
    iou_threshold: float = rng(lambda v: 0 < v <= 1, "a number in (0, 1]")  # yolo: non-maximum suppression's IoU
    map_conf_threshold: float = fraction()  # yolo: the least score of the detections the test's mAP ranks
    delta: float = above_0()
    weights: Optional[dict[str, float]] = rng(lambda v: all(w >= 0 for w in v.values()), "null or {target: weight >= 0}")
    outputs: Optional[dict[str, str]]  # multioutput: a loss per target, {target: loss name}


@dataclass
class TensorBoard:
    graph: bool


@dataclass
class Logger:
    console: bool
    jsonl: bool
    csv: bool
    tensorboard: Union[bool, TensorBoard] = rng(allowed="true, false or {graph: true|false}")


@dataclass
class Sweep:
    on_failure: Literal["continue", "stop"]


@dataclass
class Config:
    """The root: the groups and the top-level keys."""

    REQUIRED: ClassVar[tuple] = ("seed", "device", "task", "resume", "sweep", "model", "trainer", "optimizer",
                                 "scheduler", "loss", "logger")  # and dataset or env (validate)

    seed: int = rng(lambda v: 0 <= v < 2**32, "an integer in [0, 2**32)")
    device: str  # auto | cpu | cuda | cuda:N | mps (torch.device checks it)
    task: Optional[Literal["multiclass", "binary", "multilabel", "regression", "reconstruction", "next_token", "generation",
                           "seq2seq", "segmentation", "detection"]]
    resume: Union[str, int, None]  # a run folder or checkpoint (`resume=1`: a sweep's job folder)
    sweep: Sweep
    model: Model
    dataset: Optional[Dataset]  # null when env=... is chosen
    env: Optional[Env]
    trainer: Trainer
    optimizer: Optimizer
    scheduler: Scheduler
    loss: Loss
    logger: Logger


def settings(schema: type, node) -> object:
    """An instance of a schema dataclass from a config mapping (nested schemas too): the one settings object
    a component takes (`Trainer`'s for the trainer and its loop), checked already by `validate`."""
    import typing
    from collections.abc import Mapping

    hints = typing.get_type_hints(schema)
    values = {}
    for f in dataclasses.fields(schema):
        value = node[f.name]
        sub = next((a for a in (hints[f.name], *typing.get_args(hints[f.name])) if dataclasses.is_dataclass(a)), None)
        values[f.name] = settings(sub, value) if sub is not None and isinstance(value, Mapping) else value
    return schema(**values)
