"""A run, top to bottom: `train(cfg, run_dir)` = lock the folder -> setup (resume state, build, records) ->
fit -> test with the best weights (metrics, the task's artifacts) -> summary.json. The CLI, the Python API
and each sweep job call it with a composed config (dlrun/config/composition.py)."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.markup import escape

import dlrun
from dlrun.config.overrides import override_key
from dlrun.config.validation import validate
from dlrun.errors import DlrunError
from dlrun.models.summary import count_params
from dlrun.plotter import Plotter
from dlrun.rl.build import AGENTS, build_env_job
from dlrun.train import distributed, run_folder, startup
from dlrun.train.build import Job, build
from dlrun.train.checkpoint import atomic_write, load_checkpoint, save_safetensors
from dlrun.train.device import resolve_device, seed_everything, versions
from dlrun.train.loop import Interrupted
from dlrun.train.resuming import apply_learning_rate, resume_state
from dlrun.train.run_folder import continue_hint, log

RESUMABLE = 75  # SIGUSR1 (e.g. SLURM's --signal=USR1@90): saved and stopped; requeue and `dlrun resume=RUN_DIR`
EXIT_CODES = {"completed": 0, "failed": 1, signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGUSR1: RESUMABLE}


def train(cfg: DictConfig, run_dir: Path, console: Console | None = None, plotter: Plotter | None = None,
          overrides: list[str] | None = None, sweep_job: bool = False) -> tuple[dict, list[dict]]:
    """Run one training job described by `cfg` in `run_dir`; returns (summary, history).

    The folder is locked for the job's life. A run that fails before training starts leaves nothing behind
    (a sweep's job keeps its folder, for the ledger); once it has started, summary.json is written whatever
    the outcome. `overrides`: what .hydra/overrides.yaml records (a resume reads them back). `plotter`: where
    the PNGs are drawn (default: here, at once); the caller closes it."""
    start = time.perf_counter()
    validate(cfg)
    run_dir, main = Path(run_dir), distributed.is_main_process()
    if main:  # in a process group, rank 0 claims and writes the folder
        run_folder.claim(run_dir, new=cfg.resume is None)
    if cfg.trainer.devices > 1 and distributed.environment() is None:  # this process starts the group
        startup.resume()
        return launch(cfg, run_dir, overrides or [], sweep_job)
    console = console if main and console else Console(quiet=not main)
    try:
        with translated_errors(run_dir):
            job = setup(cfg, run_dir, console, [o for o in overrides or [] if override_key(o) != "resume"])
    except BaseException:
        run_folder.close_log(run_dir) if sweep_job else run_folder.forget_unstarted(run_dir)
        raise
    finally:
        startup.resume()  # the command paused the garbage collector while torch loaded (dlrun/train/startup.py)
    try:
        summary = fit(job)
        if summary["status"] == "completed" and main:
            test(job, summary, plotter or Plotter())
        return finish(job, summary, start), job.trainer.history
    finally:
        run_folder.close_log(run_dir)


def setup(cfg: DictConfig, run_dir: Path, console: Console, overrides: list[str]) -> Job:
    """Read and check the resume state, build the job, restore the state; record the config last, so that a
    refused or failed start leaves the folder's records as they were."""
    group, device = distributed.join(resolve_device(cfg.device))  # torchrun's or launch's group, if any
    main = group is None or group.main
    state, changed = resume_state(cfg, run_dir, device, OmegaConf.to_container(cfg, resolve=True), console)
    if main:
        run_folder.open_log(run_dir)
    what = (f"resuming the run after epoch {state['epoch']}" if state else
            "starting the run again (it wrote no checkpoint)" if cfg.resume is not None else "new run")
    log.info("dlrun %s: %s in %s", dlrun.__version__, what, run_dir)
    seed_everything(cfg.seed, cfg.trainer.deterministic)
    from_env = cfg.get("env") is not None or cfg.model.name in AGENTS  # reinforcement learning: dlrun/rl
    if from_env and group is not None:
        raise DlrunError("an environment's run (env=..., reinforcement learning) trains in one process; leave out "
                         "trainer.devices and torchrun.")
    job = build_env_job(cfg, run_dir, device, console) if from_env else build(cfg, run_dir, device, console, group)
    if state is not None:
        try:
            job.trainer.load_state_dict(state)
        except (RuntimeError, KeyError, ValueError) as exc:  # a checkpoint of another shape of model or optimizer
            raise DlrunError(f"cannot resume {run_dir}: its checkpoint does not fit this config "
                             f"({type(exc).__name__}: {str(exc).strip().splitlines()[0][:300]}). Nothing was changed.") from None
        apply_learning_rate(job.trainer.loop.optimizer, job.trainer.loop.scheduler, job.trainer.step, changed, console)
        job.resumed = changed
    elif cfg.resume is not None and main:
        run_folder.clear_outputs(run_dir)  # no checkpoint was ever written: the run starts again
    if main:
        run_folder.record_config(run_dir, OmegaConf.to_yaml(cfg), overrides)
    log.info("config:\n%s", OmegaConf.to_yaml(cfg).rstrip())
    return job


def fit(job: Job) -> dict:
    """Train: the summary so far, `status` completed, interrupted or failed (`job.failure` says why)."""
    cfg, run_dir, trainer = job.cfg, job.run_dir, job.trainer
    summary = {"status": "running", "model": cfg.model.name, **job.header(), "run_dir": str(run_dir),
               "params": count_params(job.model)}
    group = distributed.environment()
    if group is not None:
        summary.update(processes=group.world, strategy=cfg.trainer.strategy)
    if job.resumed:
        summary["resume_changes"] = {k: {"from": a, "to": b} for k, (a, b) in job.resumed.items()}
    try:
        trainer.fit()
        summary["status"] = "completed"
    except Interrupted as exc:
        summary["status"], summary["signal"] = "interrupted", exc.signum
        job.console.print(f"[yellow]{exc} received: state saved to {escape(str(run_dir / 'checkpoints' / 'last.pt'))}; "
                          f"continue with `{escape(continue_hint(run_dir))}`[/yellow]", highlight=False, soft_wrap=True)
    except KeyboardInterrupt:  # a second Ctrl-C: no saving, just say so (last.pt is the last one written)
        summary.update(status="interrupted", signal=signal.SIGINT, aborted=True, epochs_completed=trainer.epoch)
        write_summary(run_dir, summary)
        raise
    except (DlrunError, OSError, RuntimeError) as exc:  # a non-finite loss, a full disk, a dead DataLoader worker
        job.failure = as_dlrun_error(exc, run_dir)
        summary["status"], summary["error"] = "failed", str(job.failure)
    summary.update(epochs_completed=trainer.epoch, stop_reason=trainer.stop_reason)
    if cfg.trainer.on_nonfinite == "skip":
        summary["nonfinite_skips"] = sum(r.get("nonfinite_skips", 0) for r in trainer.history)
    return summary


def test(job: Job, summary: dict, plotter: Plotter) -> None:
    """The test pass with the best weights (the run's final answer): its metrics, then the task's artifacts."""
    cfg = job.cfg
    try:
        summary["test_weights"] = load_test_weights(job)
        job.score(summary, plotter)
        if cfg.trainer.export_safetensors:
            save_safetensors(job.model, job.run_dir / "model.safetensors",
                             {"dlrun_epoch": str(summary["test_weights"]["epoch"])})
    except (DlrunError, OSError) as exc:
        job.failure = as_dlrun_error(exc, job.run_dir)
        summary["status"], summary["error"] = "failed", str(job.failure)


def finish(job: Job, summary: dict, start: float) -> dict:
    """summary.json and the loggers' last words; a failure is raised after them."""
    cb, trainer = job.checkpoint, job.trainer
    summary.update(best_epoch=cb.best_epoch, best_monitor=cb.monitor, best_value=cb.best,
                   last_epoch=trainer.history[-1] if trainer.history else None,
                   wall_time=time.perf_counter() - start, versions=versions())
    log.info("%s after %d epoch(s)%s", summary["status"], trainer.epoch,
             "".join(f", {k}={v:.6g}" for k, v in summary.items() if k.startswith("test_") and isinstance(v, float)))
    if job.failure is None:
        if trainer.writes:
            write_summary(job.run_dir, summary)
        trainer.end(summary)
        return summary
    log.info("error: %s", job.failure)
    try:
        if trainer.writes:
            write_summary(job.run_dir, summary)
        trainer.end(summary)
    except OSError:
        pass  # e.g. the disk is still full; the failure itself is what the user must see
    raise job.failure


def launch(cfg: DictConfig, run_dir: Path, overrides: list[str], sweep_job: bool) -> tuple[dict, list[dict]]:
    """trainer.devices=N: N processes (torch's elastic launcher), each running `train` as its rank."""
    tset = cfg.trainer
    distributed.check_devices(tset.devices, resolve_device(cfg.device), tset.batch_size)
    try:
        return distributed.launch(OmegaConf.to_container(cfg, resolve=True), run_dir, overrides, sweep_job,
                                  tset.devices, rank_worker)
    except DlrunError:
        if not sweep_job:
            run_folder.forget_unstarted(run_dir)  # nothing was started: nothing stays
        raise


def rank_worker(cfg: dict, run_dir: str, overrides: list[str], sweep_job: bool) -> dict:
    """One launched process: the run as its rank; errors come back to the launcher as values. Its own process
    group: a Ctrl-C in the terminal reaches the launcher alone, which passes it on once (not twice: that aborts)."""
    os.setpgrp()
    try:
        summary, history = train(OmegaConf.create(cfg), Path(run_dir), overrides=overrides, sweep_job=sweep_job)
    except DlrunError as exc:
        return {"error": str(exc), "exit_code": exc.exit_code}
    finally:
        distributed.leave()
    if summary["status"] == "interrupted":  # the launcher, stopping on a signal, reads summary.json, not this
        sys.stdout.flush()                  # value, and would wait for it to be read (30 s) before a kill
        sys.stderr.flush()
        os._exit(exit_code(summary))
    return {"summary": summary, "history": history}


def load_test_weights(job: Job) -> dict:
    """Load best.pt into the model for the test pass; which weights the test used, for summary.json. When
    best.pt cannot be read (deleted, damaged) the final weights are tested, and the summary says so."""
    best = job.run_dir / "checkpoints" / "best.pt"
    try:
        state = load_checkpoint(best, map_location=job.trainer.loop.device)
        job.model.load_state_dict(state["model"])
        return {"checkpoint": "checkpoints/best.pt", "epoch": state.get("epoch")}
    except (DlrunError, KeyError, RuntimeError) as exc:  # missing, damaged, or not this model's weights
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        note = (f"checkpoints/best.pt (epoch {job.checkpoint.best_epoch}) could not be used: {reason} "
                f"The test used the final weights (epoch {job.trainer.epoch}) instead.")
        job.console.print(f"[yellow]warning: {escape(note)}[/yellow]", highlight=False, soft_wrap=True)
        log.info("warning: %s", note)
        return {"checkpoint": None, "epoch": job.trainer.epoch, "note": note}


@contextlib.contextmanager
def translated_errors(run_dir: Path):
    """A full or read-only disk or a dead DataLoader worker becomes a one-line DlrunError (exit 1) that says
    what is intact and how to continue; other errors pass."""
    try:
        yield
    except (OSError, RuntimeError) as exc:
        translated = as_dlrun_error(exc, run_dir)
        if translated is exc:
            raise
        raise translated from None


def as_dlrun_error(exc: Exception, run_dir: Path) -> Exception:
    """`exc` said for a user (a DlrunError), or `exc` itself when it is not a user's problem."""
    if isinstance(exc, DlrunError):
        return exc
    if isinstance(exc, OSError) and run_folder.write_error(exc):
        return DlrunError(f"cannot write {exc.filename or run_dir}: {run_folder.write_error(exc)}. {_kept(run_dir)}",
                          exit_code=1)
    if isinstance(exc, RuntimeError) and "DataLoader worker" in str(exc):
        return DlrunError(f"a DataLoader worker died ({str(exc).splitlines()[0].rstrip('. ')}). Most often the "
                          "out-of-memory killer or a too small /dev/shm (docker --shm-size) ended it: lower "
                          "dataset.num_workers or trainer.batch_size; dataset.num_workers=0 loads in this process "
                          f"and shows any error where it happens. Then `{continue_hint(run_dir)}`.", exit_code=1)
    return exc


def _kept(run_dir: Path) -> str:
    last = run_dir / "checkpoints" / "last.pt"
    if last.exists():
        return f"Files written earlier are intact (the last checkpoint is {last}); free space, then `{continue_hint(run_dir)}`."
    return f"No checkpoint was written yet; free space, then `{continue_hint(run_dir)}` starts the run again."


def write_summary(run_dir: Path, summary: dict) -> None:
    text = json.dumps(summary, indent=2, default=str)
    atomic_write(run_dir / "summary.json", lambda f: f.write(text.encode()))


def exit_code(summary: dict) -> int:
    if summary["status"] == "interrupted":
        return EXIT_CODES.get(summary.get("signal"), 1)
    return EXIT_CODES.get(summary["status"], 1)
