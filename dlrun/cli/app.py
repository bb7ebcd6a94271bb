"""The Hydra app: one run, or one job of a sweep; and the one-line report of errors that escape Hydra."""
from __future__ import annotations

import sys
import traceback
from pathlib import Path

import hydra
from omegaconf import DictConfig

from dlrun.config.search import CONF_DIR
from dlrun.errors import DlrunError, print_error, report_error, tracebacks_wanted

@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def hydra_app(cfg: DictConfig) -> dict | None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hc = HydraConfig.get()
    if hc.mode == RunMode.MULTIRUN:  # skip, resume or redo it; a ledger line; a failure is reported at once
        from dlrun.sweep.jobs import sweep_job

        return sweep_job(cfg, hc)
    run(cfg, Path(hc.runtime.output_dir), list(hc.overrides.task))


def run_direct(cfg: DictConfig, run_dir: Path, overrides: list[str]) -> None:
    """A single run without Hydra's app: `cfg` is the config `compose` made (with its `hydra` node), composed once.
    Hydra's app would compose it twice more and configure logging; what of it a run uses is done here: the
    `${hydra:...}` interpolations resolve, hydra.job.env_set is set, hydra.job.chdir is honoured."""
    import os

    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf, open_dict

    run_dir = run_dir.resolve()  # before hydra.job.chdir may change what a relative path means
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir, cfg.hydra.runtime.cwd = str(run_dir), os.getcwd()
        cfg.hydra.overrides.task = overrides
    HydraConfig.instance().set_config(cfg)
    os.environ.update({str(k): str(v) for k, v in cfg.hydra.job.env_set.items()})
    if cfg.hydra.job.chdir:
        os.chdir(run_dir)
    run(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), run_dir, overrides)


def run(cfg: DictConfig, run_dir: Path, overrides: list[str]) -> None:
    """One run of the CLI: matplotlib loads in a helper process while torch loads here; errors in one line."""
    from dlrun.plotter import Plotter

    plotter = Plotter.start()  # on another core, while torch loads here
    from dlrun.train.pipeline import exit_code, train, translated_errors

    try:
        summary, _ = train(cfg, run_dir, plotter=plotter, overrides=overrides)
        with translated_errors(run_dir):
            plotter.close()
        code = exit_code(summary)  # non-zero only if interrupted
    except DlrunError as exc:
        code = report_error(exc)
    except Exception as exc:  # noqa: BLE001  one line here, not Hydra's report of a failed job
        code = unexpected(exc)
    finally:
        plotter.cancel()  # a no-op once closed
    if code:
        sys.exit(code)


def unexpected(exc: Exception) -> int:
    """An error that escaped Hydra (its own file writes, a sweep job's composition): one line, or the
    traceback when asked for; returns the exit code."""
    from hydra.errors import HydraException

    from dlrun.train import run_folder

    if tracebacks_wanted():
        traceback.print_exception(exc, file=sys.stderr)
    if isinstance(exc, OSError) and run_folder.write_error(exc):
        print_error(f"cannot write {exc.filename or ''}: {run_folder.write_error(exc)}. Nothing was run.")
        return 1
    if isinstance(exc, HydraException):
        cause = exc.__cause__ or exc
        print_error(f"{str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__}")
        return 2
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    print_error(f"{type(exc).__name__}: {first}" + ("" if tracebacks_wanted() else
                                                     " (HYDRA_FULL_ERROR=1 shows the traceback)"))
    return 1
