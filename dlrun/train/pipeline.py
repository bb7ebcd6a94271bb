"""Glue: composed config -> dataset, model, optimizer, callbacks -> `Trainer.fit` -> summary.json."""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import platform
import random
import signal
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.markup import escape

import dlrun
from dlrun.train import run_folder
from dlrun.train.callbacks import EarlyStopping, LoggerCallback, ModelCheckpoint, RunLogCallback
from dlrun.train.checkpoint import atomic_write, load_checkpoint
from dlrun.config.overrides import override_key
from dlrun.config.validate import validate
from dlrun.data import build_dataset
from dlrun.data.augment import Augment, parse_augment
from dlrun.errors import DlrunError
from dlrun.models.summary import count_params, print_summary
from dlrun.train.optim import build_optimizer, build_scheduler
from dlrun.registry import LOGGERS, build_model
from dlrun.tasks.metrics import test_metrics
from dlrun.plotter import Plotter
from dlrun.config.resume import changes
from dlrun.tasks.base import build_task
from dlrun.train.run_folder import continue_hint, log
from dlrun.train.trainer import Interrupted, Trainer

RESUMABLE = 75  # SIGUSR1 (e.g. SLURM's --signal=USR1@90): saved and stopped; requeue and `dlrun resume=RUN_DIR`
EXIT_CODES = {"completed": 0, "failed": 1, signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGUSR1: RESUMABLE}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
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


def train(cfg: DictConfig, run_dir: Path, console: Console | None = None, plotter: Plotter | None = None,
          overrides: list[str] | None = None, sweep_job: bool = False) -> tuple[dict, list[dict]]:
    """Run one training job described by `cfg` in `run_dir`; returns (summary, history).

    The folder is locked for the job's life. A run that fails before training starts leaves nothing behind
    (a sweep's job keeps its folder, for the ledger); once it has started, summary.json is written whatever
    the outcome. `overrides`: what .hydra/overrides.yaml records (a resume reads them back). `plotter`: where
    the PNGs are drawn (default: here, at once); the caller closes it."""
    start = time.perf_counter()
    validate(cfg)
    run_dir = Path(run_dir)
    if cfg.resume is None and (run_dir / "summary.json").exists():
        raise DlrunError(f"{run_dir} already holds a run; use `{continue_hint(run_dir)}` or another folder.")
    run_folder.lock(run_dir)
    console = console or Console()
    try:
        with translated_errors(run_dir):
            job = setup(cfg, run_dir, console, [o for o in overrides or [] if override_key(o) != "resume"])
    except BaseException:
        run_folder.close_log(run_dir) if sweep_job else run_folder.forget_unstarted(run_dir)
        raise
    try:
        with translated_errors(run_dir):
            return run(job, plotter, start)
    finally:
        run_folder.close_log(run_dir)


@dataclasses.dataclass
class Job:
    """Everything a training job is made of, built by `setup` and used by the later stages."""

    cfg: DictConfig
    run_dir: Path
    console: Console
    data: object
    task: object
    model: torch.nn.Module
    trainer: Trainer
    loggers: list
    checkpoint: ModelCheckpoint
    resumed: dict = dataclasses.field(default_factory=dict)  # what a resume changed: key -> (old, new)


def setup(cfg: DictConfig, run_dir: Path, console: Console, overrides: list[str]) -> Job:
    """Read and check the resume state, build data, model, optimizer and trainer; record the config last,
    so that a refused or failed start leaves the folder's records as they were."""
    tcfg = cfg.trainer
    device = resolve_device(cfg.device)
    config = OmegaConf.to_container(cfg, resolve=True)
    state, changed = resume_state(cfg, run_dir, device, config, console)
    run_folder.open_log(run_dir)
    what = ("resuming the run after epoch %d" % state["epoch"] if state else
            "starting the run again (it wrote no checkpoint)" if cfg.resume is not None else "new run")
    log.info("dlrun %s: %s in %s", dlrun.__version__, what, run_dir)
    seed_everything(cfg.seed, tcfg.deterministic)

    augment = parse_augment(cfg.dataset.get("augment"))  # checked before any data is loaded
    data = build_dataset(cfg.dataset)
    in_memory = cfg.dataset.get("in_memory", True)
    data.to(device, splits=in_memory)
    data.adapt_to_task(cfg.task or cfg.model.get("task") or data.task)  # a model may name its task (autoencoders)
    augment = Augment(augment, data.input_shape)
    task = build_task(data.task, cfg.loss, data.num_outputs)
    model = build_sized_model(cfg, data).to(device)
    if hasattr(model, "train_step"):  # it updates itself: the trainer's own step options do not reach it
        own = {"trainer.max_grad_norm": tcfg.max_grad_norm, "trainer.clip_value": tcfg.get("clip_value"),
               "trainer.l1": tcfg.l1, "trainer.l2": tcfg.l2, "trainer.on_nonfinite=skip": tcfg.get("on_nonfinite") == "skip",
               "trainer.precision": str(tcfg.get("precision", "32")) != "32"}
        if any(own.values()):
            raise DlrunError(f"model={cfg.model.name} runs its own update, which does not apply "
                             f"{', '.join(k for k, v in own.items() if v)}; leave them at their defaults.")
    if tcfg.summary and cfg.logger.console:
        print_summary(model, data.input_shape, console, device)
    set_backends(device, tcfg.get("tf32", False), tcfg.get("cudnn_benchmark", True), tcfg.deterministic)
    if tcfg.get("channels_last"):
        model = model.to(memory_format=torch.channels_last)
    if tcfg.get("compile"):
        model.compile()  # in place: the first step compiles (seconds); state_dict keys stay as they are
    optimizer = build_optimizer(cfg.optimizer, model.param_groups(cfg.optimizer.get("lr")) if hasattr(model, "param_groups") else model.parameters())

    loggers = [LOGGERS.get(name)(run_dir, console) for name, on in cfg.logger.items() if on]
    checkpoint = ModelCheckpoint(run_dir / "checkpoints", tcfg.checkpoint.monitor)
    callbacks = []
    if tcfg.early_stopping.patience:
        es = tcfg.early_stopping
        callbacks.append(EarlyStopping(es.monitor, es.patience, es.min_delta))
    callbacks += [LoggerCallback(loggers), checkpoint, RunLogCallback()]
    trainer = Trainer(model, optimizer, None, "epoch", task, data, epochs=tcfg.epochs,
                      batch_size=tcfg.batch_size, device=device, run_dir=run_dir, callbacks=callbacks,
                      console=console if cfg.logger.console else None, seed=cfg.seed, log_every=tcfg.log_every,
                      limit_batches=tcfg.limit_batches, in_memory=in_memory,
                      num_workers=cfg.dataset.get("num_workers", 0), max_grad_norm=tcfg.max_grad_norm,
                      l1=tcfg.l1, l2=tcfg.l2, augment=augment, config=config,
                      checkpoint_every_steps=tcfg.get("checkpoint_every_steps"),
                      on_nonfinite=tcfg.get("on_nonfinite", "stop"), clip_value=tcfg.get("clip_value"),
                      precision=str(tcfg.get("precision", "32")), channels_last=tcfg.get("channels_last", False))
    trainer.scheduler, trainer.scheduler_interval = build_scheduler(
        cfg.scheduler, optimizer, tcfg.epochs, trainer.num_batches(data.train))
    if state is not None:
        try:
            trainer.load_state_dict(state)
        except (RuntimeError, KeyError, ValueError) as exc:  # a checkpoint of another shape of model or optimizer
            raise DlrunError(f"cannot resume {run_dir}: its checkpoint does not fit this config "
                             f"({type(exc).__name__}: {str(exc).strip().splitlines()[0][:300]}). Nothing was changed.") from None
        apply_learning_rate(trainer, changed, console)
    elif cfg.resume is not None:
        run_folder.clear_outputs(run_dir)  # no checkpoint was ever written: the run starts again
    run_folder.record_config(run_dir, OmegaConf.to_yaml(cfg), overrides)
    log.info("config:\n%s", OmegaConf.to_yaml(cfg).rstrip())
    return Job(cfg, run_dir, console, data, task, model, trainer, loggers, checkpoint, changed)


def resume_state(cfg: DictConfig, run_dir: Path, device: torch.device, config: dict, console: Console):
    """(checkpoint state, allowed config changes) of a resume; (None, {}) for a new run, or for a resume of a
    run that never wrote a checkpoint (it starts again from its first step)."""
    if cfg.resume is None:
        return None, {}
    source = Path(os.path.expanduser(str(cfg.resume)))  # RUN_DIR (its last.pt) or RUN_DIR/checkpoints/X.pt
    path = source if source.is_file() else run_dir / "checkpoints" / "last.pt"
    if not path.exists() and not source.is_file():
        console.print(f"[yellow]{escape(str(run_dir))} has no checkpoint yet: the run starts again from its first step[/yellow]",
                      soft_wrap=True, highlight=False)
        return None, {}
    state = load_checkpoint(path, map_location=device)  # read and verified before anything else
    changed = changes(state.get("config") or {}, config, int(state.get("epoch", 0)), run_dir)
    return state, changed


def apply_learning_rate(trainer: Trainer, changed: dict, console: Console) -> None:
    """A resume with a new optimizer.lr: every parameter group's rate (and a schedule's base rates) scaled by
    new/old, from the next optimizer step on; said on the console and in the log."""
    if "optimizer.lr" not in changed:
        return
    old, new = changed["optimizer.lr"]
    ratio = new / old
    for group in trainer.optimizer.param_groups:
        group["lr"] *= ratio
        if "initial_lr" in group:
            group["initial_lr"] *= ratio
    sched = trainer.scheduler
    for s in (sched._schedulers if isinstance(sched, torch.optim.lr_scheduler.SequentialLR) else [sched]):
        if s is not None and not isinstance(s, torch.optim.lr_scheduler.ReduceLROnPlateau):
            s.base_lrs = [b * ratio for b in s.base_lrs]
    note = f"optimizer.lr changed on resume: {old:g} -> {new:g}, from optimizer step {trainer.step + 1} on"
    console.print(f"[yellow]{note}[/yellow]", soft_wrap=True, highlight=False)
    log.info(note)


def build_sized_model(cfg: DictConfig, data) -> torch.nn.Module:
    """The model for the data's shapes; one too big for the memory is a one-line error with its size."""
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    build = functools.partial(build_model, model_cfg, data.input_shape, data.num_outputs, cfg.dataset.name,
                              data.tokens, data.vocab)
    try:
        return build()
    except (RuntimeError, MemoryError) as exc:
        if not isinstance(exc, MemoryError) and "allocate" not in str(exc):
            raise
    with torch.device("meta"):  # the same model without memory, to count what it would need
        params = count_params(build(), None)
    raise DlrunError(f"model={cfg.model.name} with these settings has {params:,} parameters ({params * 4 / 1e9:.1f} GB "
                     "in float32, before gradients and optimizer state) and does not fit in this machine's memory; "
                     "make it smaller (e.g. model.hidden).")


@contextlib.contextmanager
def translated_errors(run_dir: Path):
    """A full or read-only disk, a dead DataLoader worker or an allocation that fails become one-line
    DlrunErrors (exit 1) that say what is intact and how to continue; other errors pass."""
    try:
        yield
    except OSError as exc:
        reason = run_folder.write_error(exc)
        if reason is None:
            raise
        raise DlrunError(f"cannot write {exc.filename or run_dir}: {reason}. {_kept(run_dir)}", exit_code=1) from None
    except RuntimeError as exc:
        if "DataLoader worker" not in str(exc):
            raise
        raise DlrunError(f"a DataLoader worker died ({str(exc).splitlines()[0].rstrip('. ')}). Most often the "
                         "out-of-memory killer or a too small /dev/shm (docker --shm-size) ended it: lower "
                         "dataset.num_workers or trainer.batch_size; dataset.num_workers=0 loads in this process "
                         f"and shows any error where it happens. Then `{continue_hint(run_dir)}`.", exit_code=1) from None


def _kept(run_dir: Path) -> str:
    last = run_dir / "checkpoints" / "last.pt"
    if last.exists():
        return f"Files written earlier are intact (the last checkpoint is {last}); free space, then `{continue_hint(run_dir)}`."
    return f"No checkpoint was written yet; free space, then `{continue_hint(run_dir)}` starts the run again."


def run(job: Job, plotter: Plotter | None, start: float) -> tuple[dict, list[dict]]:
    """fit -> test with the best weights -> artifacts -> summary.json."""
    cfg, run_dir, trainer, console = job.cfg, job.run_dir, job.trainer, job.console
    summary = {"status": "running", "model": cfg.model.name, "dataset": cfg.dataset.name,
               "run_dir": str(run_dir), "params": count_params(job.model),
               "n_train": len(job.data.train), "n_val": len(job.data.val), "n_test": len(job.data.test)}
    if job.resumed:
        summary["resume_changes"] = {k: {"from": a, "to": b} for k, (a, b) in job.resumed.items()}
    failure: DlrunError | None = None
    try:
        trainer.fit()
        summary["status"] = "completed"
    except Interrupted as exc:
        summary["status"], summary["signal"] = "interrupted", exc.signum
        console.print(f"[yellow]{exc} received: state saved to {escape(str(run_dir / 'checkpoints' / 'last.pt'))}; "
                      f"continue with `{escape(continue_hint(run_dir))}`[/yellow]", highlight=False, soft_wrap=True,
                      markup=True)
    except KeyboardInterrupt:  # a second Ctrl-C: no saving, just say so (last.pt is the last one written)
        summary.update(status="interrupted", signal=signal.SIGINT, aborted=True, epochs_completed=trainer.epoch)
        _write_summary(run_dir, summary)
        raise
    except DlrunError as exc:  # a non-finite loss, a checkpoint that could not be written
        failure = exc
    except (OSError, RuntimeError) as exc:  # a full disk, a dead DataLoader worker: said in one line
        try:
            with translated_errors(run_dir):
                raise exc
        except DlrunError as translated:
            failure = translated
    if failure is not None:
        summary["status"], summary["error"] = "failed", str(failure)
    summary.update(epochs_completed=trainer.epoch, stop_reason=trainer.stop_reason)
    if cfg.trainer.get("on_nonfinite") == "skip":
        summary["nonfinite_skips"] = sum(r.get("nonfinite_skips", 0) for r in trainer.history)
    if summary["status"] == "completed":
        try:
            test(job, summary, plotter or Plotter())
        except (DlrunError, OSError) as exc:
            if isinstance(exc, OSError) and run_folder.write_error(exc) is None:
                raise
            failure = exc if isinstance(exc, DlrunError) else DlrunError(
                f"cannot write {exc.filename}: {run_folder.write_error(exc)}. {_kept(run_dir)}", exit_code=1)
            summary["status"], summary["error"] = "failed", str(failure)
    cb = job.checkpoint
    summary.update(best_epoch=cb.best_epoch, best_monitor=cb.monitor, best_value=cb.best,
                   last_epoch=trainer.history[-1] if trainer.history else None,
                   wall_time=time.perf_counter() - start, versions=versions())
    log.info("%s after %d epoch(s)%s", summary["status"], trainer.epoch,
             "".join(f", {k}={v:.6g}" for k, v in summary.items() if k.startswith("test_") and isinstance(v, float)))
    if failure is not None:
        log.info("error: %s", failure)
        try:
            _write_summary(run_dir, summary)
            for lg in job.loggers:
                lg.finish(summary)
        except OSError:
            pass  # e.g. the disk is still full; the failure itself is what the user must see
        raise failure
    _write_summary(run_dir, summary)
    for lg in job.loggers:
        lg.finish(summary)
    return summary, trainer.history


def test(job: Job, summary: dict, plotter: Plotter) -> None:
    """The test pass with the best weights (the run's final answer), its metrics and artifacts, into `summary`."""
    cfg, run_dir, model, data, task = job.cfg, job.run_dir, job.model, job.data, job.task
    summary["test_weights"] = load_test_weights(job)
    outputs: list = []
    test_row = job.trainer.evaluate(data.test, outputs)
    metrics, cm = test_metrics(task, torch.cat([o for o, _ in outputs]), torch.cat([y for _, y in outputs]),
                               data.classes)
    test_row.update(metrics)
    summary.update({f"test_{k}": v for k, v in test_row.items()}, task=task.name, loss=task.loss_name)
    if cm is not None:
        summary["confusion_matrix"] = cm.tolist()
        title = f"{cfg.model.name} on {cfg.dataset.name}: test confusion matrix"
        plotter.confusion(summary["confusion_matrix"], data.classes, run_dir / "confusion_matrix.png", title)
    if data.vocab is not None and hasattr(model, "neighbours"):
        summary["neighbours"] = _write_embeddings(model, data.vocab, run_dir)
    if task.name == "next_token" and hasattr(model, "sample"):
        summary["sample"] = _write_sample(model, data, run_dir, cfg.seed)
        if cfg.logger.console:
            job.console.print(f"[bold]sample[/bold] (samples.txt): {summary['sample']}", markup=True, highlight=False)
    if task.name in ("reconstruction", "generation") and len(data.input_shape) == 3 and data.input_shape[0] in (1, 3):
        _draw_images(plotter, model, outputs, run_dir, task.name, f"{cfg.model.name} on {cfg.dataset.name}")
    if cfg.trainer.get("export_safetensors"):
        export_safetensors(model, run_dir / "model.safetensors", {"dlrun_epoch": str(summary["test_weights"]["epoch"])})


def load_test_weights(job: Job) -> dict:
    """Load best.pt into the model for the test pass; which weights the test used, for summary.json. When
    best.pt cannot be read (deleted, damaged) the final weights are tested, and the summary says so."""
    best = job.run_dir / "checkpoints" / "best.pt"
    try:
        state = load_checkpoint(best, map_location=job.trainer.device)
        job.model.load_state_dict(state["model"])
        return {"checkpoint": "checkpoints/best.pt", "epoch": state.get("epoch")}
    except (DlrunError, KeyError, RuntimeError) as exc:  # missing, damaged, or not this model's weights
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        note = (f"checkpoints/best.pt (epoch {job.checkpoint.best_epoch}) could not be used: {reason} "
                f"The test used the final weights (epoch {job.trainer.epoch}) instead.")
        job.console.print(f"[yellow]warning: {escape(note)}[/yellow]", highlight=False, soft_wrap=True)
        log.info("warning: %s", note)
        return {"checkpoint": None, "epoch": job.trainer.epoch, "note": note}


def _write_embeddings(model, vocab: list[str], run_dir: Path, top: int = 10, k: int = 5) -> dict:
    """embeddings.tsv (a word and its vector per line) and neighbours.txt (the `k` nearest words, by cosine
    similarity, of the `top` most frequent ones); returns those neighbours for the summary."""
    vectors = model.centre.weight.detach().float().cpu()
    lines = [w + "\t" + "\t".join(f"{v:.5g}" for v in vec.tolist()) for w, vec in zip(vocab, vectors)]
    atomic_write(run_dir / "embeddings.tsv", lambda f: f.write(("\n".join(lines) + "\n").encode()), durable=False)
    ids = torch.arange(min(top, len(vocab)), device=model.centre.weight.device)
    sims, near = model.neighbours(ids, min(k, len(vocab) - 1))
    found = {vocab[i]: [vocab[j] for j in row] for i, row in zip(ids.tolist(), near.tolist())}
    text = "".join(f"{w}: " + ", ".join(f"{n} ({s:.2f})" for n, s in zip(found[w], srow)) + "\n"
                   for w, srow in zip(found, sims.tolist()))
    atomic_write(run_dir / "neighbours.txt", lambda f: f.write(text.encode()), durable=False)
    return found


def _write_sample(model, data, run_dir: Path, seed: int) -> str:
    """samples.txt: the start of the test text as a prompt, then what the model writes after it."""
    prompt = data.test.x[0][: max(1, min(32, data.input_shape[0]))]
    new = model.sample(prompt, generator=torch.Generator().manual_seed(seed))
    text = "".join(data.classes[int(t)] for t in prompt) + "".join(data.classes[int(t)] for t in new)
    atomic_write(run_dir / "samples.txt", lambda f: f.write(text.encode()), durable=False)
    return text


def _draw_images(plotter: Plotter, model, outputs: list, run_dir: Path, task: str, title: str, n: int = 8) -> None:
    """reconstructions.png: the first test images, their reconstructions and, for a model that can `sample`
    (the VAE), images decoded from the prior; samples.png (generation): real test images and generated ones."""
    out, target = outputs[0]
    rows = [target[:n].cpu().tolist(), out[:n].cpu().tolist()]
    if task == "generation":
        plotter.images(rows, ["real", "generated"], run_dir / "samples.png", f"{title}: real and generated")
        return
    labels = ["input", "rebuilt"]
    if hasattr(model, "sample"):
        model.eval()
        rows.append(model.sample(n).float().cpu().tolist())
        labels.append("sampled")
    plotter.images(rows, labels, run_dir / "reconstructions.png", f"{title}: test reconstructions")


def _write_summary(run_dir: Path, summary: dict) -> None:
    text = json.dumps(summary, indent=2, default=str)
    atomic_write(run_dir / "summary.json", lambda f: f.write(text.encode()))


def export_safetensors(model: torch.nn.Module, path: Path, metadata: dict | None = None) -> None:
    """The model's weights as safetensors (tensors only, nothing to unpickle), written atomically."""
    from safetensors.torch import save

    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}  # clone: no sharing
    data = save(tensors, metadata={"format": "pt", **(metadata or {})})
    atomic_write(path, lambda f: f.write(data))


def exit_code(summary: dict) -> int:
    if summary["status"] == "interrupted":
        return EXIT_CODES.get(summary.get("signal"), 1)
    return EXIT_CODES.get(summary["status"], 1)
