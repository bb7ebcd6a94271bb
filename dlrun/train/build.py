"""The build stage of a run: from the composed config to data, task, model, optimizer, schedule, loop,
callbacks, loggers and trainer. Each function builds one thing and checks what it can before work starts."""
from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from rich.console import Console

import dlrun
from dlrun.config.schema import Trainer as TrainerSettings
from dlrun.config.schema import settings
from dlrun.data import DataBundle, build_dataset
from dlrun.data.augment import Augment, parse_augment
from dlrun.data.loader import Batches
from dlrun.errors import DlrunError
from dlrun.models.base import output_kind, param_groups, updates_itself
from dlrun.models.build import build_model
from dlrun.models.summary import count_params, print_summary
from dlrun.registry import LOGGERS, MODELS, TASKS
from dlrun.tasks.base import Artifacts, Task
from dlrun.train.callbacks import EarlyStopping, LoggerCallback, ModelCheckpoint, RunLogCallback
from dlrun.train.device import set_backends
from dlrun.train.distributed import Asynchronous, Group, strategy_for
from dlrun.train.loop import SupervisedLoop
from dlrun.train.optim import build_optimizer, build_scheduler
from dlrun.train.param_server import ParameterServerLoop
from dlrun.train.run_folder import log
from dlrun.train.trainer import Trainer


@dataclasses.dataclass
class Job:
    """Everything a training job is made of, built by `build` and used by the later stages."""

    cfg: DictConfig
    run_dir: Path
    console: Console
    data: DataBundle
    task: Task
    trainer: Trainer
    checkpoint: ModelCheckpoint
    resumed: dict = dataclasses.field(default_factory=dict)  # what a resume changed: key -> (old, new)
    failure: DlrunError | None = None  # why the run failed, raised once its summary is written

    @property
    def model(self) -> torch.nn.Module:
        return self.trainer.model

    def header(self) -> dict:
        """What the summary says first about what the run learns from (an environment's job says its own)."""
        return {"dataset": self.cfg.dataset.name, "n_train": len(self.data.train), "n_val": len(self.data.val),
                "n_test": len(self.data.test)}

    def score(self, summary: dict, plotter) -> None:
        """The test pass with the weights loaded: its metrics into `summary`, then the task's artifacts."""
        cfg, data, task = self.cfg, self.data, self.task
        metrics, extra, outputs = self.trainer.loop.score(data.test, cfg.seed)
        summary.update({f"test_{k}": v for k, v in metrics.items()}, task=task.name, loss=task.loss_name, **extra)
        if task.headline:
            summary["headline"] = task.headline
        say = (lambda line: self.console.print(line, highlight=False, markup=False)) if cfg.logger.console else _quiet
        task.write_artifacts(Artifacts(self.model, data, outputs, self.run_dir, plotter,
                                       f"{cfg.model.name} on {cfg.dataset.name}", cfg.seed, say), summary)


def _quiet(line: str) -> None: ...


def build(cfg: DictConfig, run_dir: Path, device: torch.device, console: Console, group: Group | None = None) -> Job:
    """Data, task, model, optimizer, schedule, loop, callbacks and trainer for `cfg`; in a process group, this
    rank's (rank 0 alone writes: the other ranks get no loggers and no progress, and save nothing)."""
    tset = settings(TrainerSettings, cfg.trainer)
    writes = group is None or group.main
    data, task, augment = build_data(cfg, device)
    for note in data.notes:  # rows dropped, files skipped: said once, and kept in dlrun.log
        log.info("dataset=%s: %s", cfg.dataset.name, note)
        if cfg.logger.console:
            console.print(f"dataset={cfg.dataset.name}: {note}", highlight=False, markup=False)
    check_model_output(cfg, task)
    model = build_sized_model(cfg, data).to(device)
    check_own_update(cfg, model, tset, group)
    if tset.summary and cfg.logger.console:
        print_summary(model, data.input_shape, console, device)
    set_backends(device, tset.tf32, tset.cudnn_benchmark, tset.deterministic)
    if tset.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if tset.compile:
        model.compile()  # in place: the first step compiles (seconds); state_dict keys stay as they are
    optimizer = build_optimizer(cfg.optimizer, param_groups(model, cfg.optimizer.get("lr")))
    strategy = strategy_for(tset, group, device)
    batches = Batches(device, tset.batch_size, cfg.seed, tset.limit_batches, cfg.dataset.get("in_memory", True),
                      cfg.dataset.get("num_workers", 0), *strategy.shard)
    scheduler, interval = build_scheduler(cfg.scheduler, optimizer, tset.epochs, batches.count(data.train))
    loop_type = ParameterServerLoop if isinstance(strategy, Asynchronous) else SupervisedLoop  # param_server: its own
    loop = loop_type(model, optimizer, task, data, batches, tset, scheduler, interval, augment, strategy)
    checkpoint = ModelCheckpoint(run_dir / "checkpoints", tset.checkpoint.monitor)
    trainer = Trainer(loop, tset.epochs, run_dir, [*early_stopping(tset), LoggerCallback(loggers(cfg, run_dir, console)
                                                                                          if writes else []),
                                                   checkpoint, RunLogCallback()],
                      console if cfg.logger.console and writes else None, OmegaConf.to_container(cfg, resolve=True),
                      describe(cfg, data, task), writes)
    return Job(cfg, run_dir, console, data, task, trainer, checkpoint)


def build_data(cfg: DictConfig, device: torch.device) -> tuple[DataBundle, Task, Augment]:
    """The dataset on the device (unless a DataLoader serves it), its targets shaped for the task, the task
    with its loss, and the augmentation (checked before any data is loaded)."""
    spec = parse_augment(cfg.dataset.get("augment"))
    data = build_dataset(cfg.dataset)
    data.to(device, splits=cfg.dataset.get("in_memory", True))
    kind = task_for(cfg, data)
    weights = kind.class_weights(cfg.trainer.get("class_weight"), data.train.y, max(data.num_outputs, 2))
    task = kind.build(cfg.loss, data.num_outputs, data.describe(), weights)
    task.loss_fn.to(device)  # class weights live in the loss
    return data, task, Augment(spec, data.input_shape)


def task_for(cfg: DictConfig, data: DataBundle) -> type[Task]:
    """The run's task (task=NAME, or the model's `task` key, or the data's own) with the data's targets shaped
    for it (a 0/1 column for binary, the input's size for reconstruction, ...)."""
    kind = TASKS.get(cfg.task or cfg.model.get("task") or data.task)
    kind.adapt(data)
    return kind


OUTPUT_KINDS = {"vector": "one output vector per input (model=mlp, cnn, resnet, ...)",
                "pixels": "a score per class and pixel (model=unet)",
                "grid": "a grid of boxes and class probabilities (model=yolov1)"}  # dlrun.models.base.output_kind's values


def check_model_output(cfg: DictConfig, task: Task) -> None:
    """A model whose outputs are not of the kind the task reads (a score per pixel, one vector per input) is
    refused before it is built, from what the model class declares."""
    gives = output_kind(MODELS.get(cfg.model.name))
    if gives != task.model_output:
        raise DlrunError(f"model={cfg.model.name} gives {OUTPUT_KINDS[gives].split(' (')[0]}, but task={task.name} "
                         f"needs {OUTPUT_KINDS[task.model_output]}; choose a model that fits the task.")


def build_sized_model(cfg: DictConfig, data: DataBundle) -> torch.nn.Module:
    """The model for the data's shapes; one too big for the memory is a one-line error with its size."""
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    build_it = functools.partial(build_model, model_cfg, data.input_shape, data.num_outputs, cfg.dataset.name,
                                 data.tokens, data.vocab, data.features, data.head_sizes())
    try:
        return build_it()
    except (RuntimeError, MemoryError) as exc:
        if not isinstance(exc, MemoryError) and "allocate" not in str(exc):
            raise
    with torch.device("meta"):  # the same model without memory, to count what it would need
        params = count_params(build_it(), None)
    raise DlrunError(f"model={cfg.model.name} with these settings has {params:,} parameters ({params * 4 / 1e9:.1f} GB "
                     "in float32, before gradients and optimizer state) and does not fit in this machine's memory; "
                     "make it smaller (e.g. model.hidden).")


def check_own_update(cfg: DictConfig, model: torch.nn.Module, tset, group: Group | None = None) -> None:
    """A model that updates itself is not reached by the trainer's own step options: refuse them."""
    if not updates_itself(model):
        return
    if group is not None:
        raise DlrunError(f"model={cfg.model.name} runs its own update, which no distributed strategy reaches; train "
                         "it in one process (trainer.devices=1, without torchrun).")
    own = {"trainer.max_grad_norm": tset.max_grad_norm, "trainer.clip_value": tset.clip_value, "trainer.l1": tset.l1,
           "trainer.l2": tset.l2, "trainer.on_nonfinite=skip": tset.on_nonfinite == "skip",
           "trainer.precision": str(tset.precision) != "32"}
    if any(own.values()):
        raise DlrunError(f"model={cfg.model.name} runs its own update, which does not apply "
                         f"{', '.join(k for k, v in own.items() if v)}; leave them at their defaults.")


def early_stopping(tset) -> list:
    es = tset.early_stopping
    return [EarlyStopping(es.monitor, es.patience, es.min_delta)] if es.patience else []


def loggers(cfg: DictConfig, run_dir: Path, console: Console) -> list:
    return [LOGGERS.get(name)(run_dir, console) for name, on in cfg.logger.items() if on]


def describe(cfg: DictConfig, data: DataBundle, task: Task) -> dict:
    """What a checkpoint carries to use the model without the training data: the model's config and the
    shapes it was built for, the task, and how raw inputs are prepared (normalisation, class names, vocabulary)."""
    return {"dlrun": dlrun.__version__, "task": task.name, "loss": task.loss_name, "class_weight": task.class_weight,
            "model": OmegaConf.to_container(cfg.model, resolve=True),
            "dataset": OmegaConf.to_container(cfg.dataset, resolve=True), **data.describe()}
