"""Glue: composed config -> dataset, model, optimizer, callbacks -> `Trainer.fit` -> summary.json."""
from __future__ import annotations

import errno
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

import dlrun
from dlrun.callbacks import EarlyStopping, LoggerCallback, ModelCheckpoint
from dlrun.checkpoint import atomic_write, load_checkpoint
from dlrun.config import validate
from dlrun.data import build_dataset
from dlrun.data.augment import Augment, parse_augment
from dlrun.errors import DlrunError
from dlrun.model_summary import count_params, print_summary
from dlrun.optim import build_optimizer, build_scheduler
from dlrun.registry import LOGGERS, build_model
from dlrun.metrics import test_metrics
from dlrun.plotter import Plotter
from dlrun.tasks import build_task
from dlrun.trainer import Interrupted, Trainer

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


def train(cfg: DictConfig, run_dir: Path, console: Console | None = None,
          plotter: Plotter | None = None) -> tuple[dict, list[dict]]:
    """Run one training job described by `cfg` in `run_dir`; returns (summary, history).

    The summary is also written to summary.json, whatever the outcome. `plotter`: where the PNG is drawn
    (default: here, at once); the caller closes it."""
    start = time.perf_counter()
    validate(cfg)
    run_dir = Path(run_dir)
    ckpt_dir = run_dir / "checkpoints"
    resuming = cfg.resume is not None
    if not resuming and (run_dir / "summary.json").exists():
        raise DlrunError(f"{run_dir} already holds a run; use `dlrun resume={run_dir}` or another folder.")
    console = console or Console()
    tcfg = cfg.trainer
    device = resolve_device(cfg.device)
    state = None
    if resuming:  # read (and verified) before anything else: a bad checkpoint is refused at once
        source = Path(os.path.expanduser(str(cfg.resume)))  # RUN_DIR (its last.pt) or RUN_DIR/checkpoints/X.pt
        state = load_checkpoint(source if source.is_file() else ckpt_dir / "last.pt", map_location=device)
    seed_everything(cfg.seed, tcfg.deterministic)

    augment = parse_augment(cfg.dataset.get("augment"))  # checked before any data is loaded
    data = build_dataset(cfg.dataset)
    in_memory = cfg.dataset.get("in_memory", True)
    data.to(device, splits=in_memory)
    data.adapt_to_task(cfg.task or cfg.model.get("task") or data.task)  # a model may name its task (autoencoders)
    augment = Augment(augment, data.input_shape)
    task = build_task(data.task, cfg.loss, data.num_outputs)
    model = build_model(OmegaConf.to_container(cfg.model, resolve=True), data.input_shape, data.num_outputs,
                        cfg.dataset.name, data.tokens, data.vocab).to(device)
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
    callbacks = []
    if tcfg.early_stopping.patience:
        es = tcfg.early_stopping
        callbacks.append(EarlyStopping(es.monitor, es.patience, es.min_delta))
    callbacks += [LoggerCallback(loggers), ModelCheckpoint(ckpt_dir, tcfg.checkpoint.monitor)]
    trainer = Trainer(model, optimizer, None, "epoch", task, data, epochs=tcfg.epochs,
                      batch_size=tcfg.batch_size, device=device, run_dir=run_dir, callbacks=callbacks,
                      console=console if cfg.logger.console else None, seed=cfg.seed, log_every=tcfg.log_every,
                      limit_batches=tcfg.limit_batches, in_memory=in_memory,
                      num_workers=cfg.dataset.get("num_workers", 0), max_grad_norm=tcfg.max_grad_norm,
                      l1=tcfg.l1, l2=tcfg.l2, augment=augment,
                      config=OmegaConf.to_container(cfg, resolve=True),
                      checkpoint_every_steps=tcfg.get("checkpoint_every_steps"),
                      on_nonfinite=tcfg.get("on_nonfinite", "stop"), clip_value=tcfg.get("clip_value"),
                      precision=str(tcfg.get("precision", "32")), channels_last=tcfg.get("channels_last", False))
    trainer.scheduler, trainer.scheduler_interval = build_scheduler(
        cfg.scheduler, optimizer, tcfg.epochs, trainer.num_batches(data.train))
    if state is not None:
        trainer.load_state_dict(state)

    summary = {"status": "running", "model": cfg.model.name, "dataset": cfg.dataset.name,
               "run_dir": str(run_dir), "params": count_params(model),
               "n_train": len(data.train), "n_val": len(data.val), "n_test": len(data.test)}
    failure: DlrunError | None = None
    try:
        trainer.fit()
        summary["status"] = "completed"
    except Interrupted as exc:
        summary["status"], summary["signal"] = "interrupted", exc.signum
        console.print(f"[yellow]{exc} received: state saved to {ckpt_dir / 'last.pt'}; "
                      f"continue with `dlrun resume={run_dir}`[/yellow]")
    except KeyboardInterrupt:  # a second Ctrl-C: no saving, just say so (last.pt is the last one written)
        summary.update(status="interrupted", signal=signal.SIGINT, aborted=True, epochs_completed=trainer.epoch)
        _write_summary(run_dir, summary)
        raise
    except OSError as exc:  # a full disk anywhere (metrics, checkpoints): a clear message, not a traceback
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        failure = DlrunError(f"the disk is full ({exc.filename or exc}): {exc.strerror}. Files written earlier "
                             f"are intact; free space, then `dlrun resume={run_dir}`.", exit_code=1)
    except RuntimeError as exc:  # torch reports a dead DataLoader worker so, wherever the main process notices
        if "DataLoader worker" not in str(exc):
            raise
        failure = DlrunError(f"a DataLoader worker died ({str(exc).splitlines()[0].rstrip('. ')}). Most often the "
                             "out-of-memory killer or a too small /dev/shm (docker --shm-size) ended it: lower "
                             "dataset.num_workers or trainer.batch_size; dataset.num_workers=0 loads in this process "
                             f"and shows any error where it happens. Then `dlrun resume={run_dir}`.", exit_code=1)
    except DlrunError as exc:  # a non-finite loss, a checkpoint that could not be written
        failure = exc
    if failure is not None:
        summary["status"], summary["error"] = "failed", str(failure)
    summary.update(epochs_completed=trainer.epoch, stop_reason=trainer.stop_reason)
    if tcfg.get("on_nonfinite") == "skip":
        summary["nonfinite_skips"] = sum(r.get("nonfinite_skips", 0) for r in trainer.history)

    cb = next(c for c in callbacks if isinstance(c, ModelCheckpoint))
    if summary["status"] == "completed":
        best = ckpt_dir / "best.pt"
        if best.exists():  # test with the best weights, as the final answer of the run
            model.load_state_dict(load_checkpoint(best, map_location=device)["model"])
        outputs: list = []
        test = trainer.evaluate(data.test, outputs)
        metrics, cm = test_metrics(task, torch.cat([o for o, _ in outputs]), torch.cat([y for _, y in outputs]),
                                   data.classes)
        test.update(metrics)
        summary.update({f"test_{k}": v for k, v in test.items()}, task=task.name, loss=task.loss_name)
        if cm is not None:
            summary["confusion_matrix"] = cm.tolist()
            title = f"{cfg.model.name} on {cfg.dataset.name}: test confusion matrix"
            (plotter or Plotter()).confusion(summary["confusion_matrix"], data.classes,
                                             run_dir / "confusion_matrix.png", title)
        if data.vocab is not None and hasattr(model, "neighbours"):
            summary["neighbours"] = _write_embeddings(model, data.vocab, run_dir)
        if task.name == "next_token" and hasattr(model, "sample"):
            summary["sample"] = _write_sample(model, data, run_dir, cfg.seed)
            if cfg.logger.console:
                console.print(f"[bold]sample[/bold] (samples.txt): {summary['sample']}", markup=True, highlight=False)
        if task.name in ("reconstruction", "generation") and len(data.input_shape) == 3 and data.input_shape[0] in (1, 3):
            _draw_images(plotter or Plotter(), model, outputs, run_dir, task.name, f"{cfg.model.name} on {cfg.dataset.name}")
        if tcfg.get("export_safetensors"):
            export_safetensors(model, run_dir / "model.safetensors", {"dlrun_epoch": str(cb.best_epoch)})
    summary.update(best_epoch=cb.best_epoch, best_monitor=cb.monitor, best_value=cb.best,
                   history=trainer.history[-1] if trainer.history else None,
                   wall_time=time.perf_counter() - start, versions=versions())
    summary["last_epoch"] = summary.pop("history")
    if failure is not None:
        try:
            _write_summary(run_dir, summary)
            for lg in loggers:
                lg.finish(summary)
        except OSError:
            pass  # e.g. the disk is still full; the failure itself is what the user must see
        raise failure
    _write_summary(run_dir, summary)
    for lg in loggers:
        lg.finish(summary)
    return summary, trainer.history


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
