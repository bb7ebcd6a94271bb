"""The `dlrun` command: a Hydra app plus the `list` subcommand.

Start-up stays light: torch is imported only once a run really starts, so `--help`,
`--cfg job`, `list` and bad input answer in a fraction of a second.
"""
from __future__ import annotations

import atexit
import os
import sys
import threading
import traceback
import uuid
from pathlib import Path

import hydra
from omegaconf import DictConfig
from rich.console import Console
from rich.text import Text

from dlrun.config import CONF_DIR
from dlrun.errors import DlrunError, did_you_mean

VALUE_FLAGS = {"-c", "--cfg", "-p", "--package", "-cp", "--config-path", "-cn", "--config-name",
               "-cd", "--config-dir", "--experimental-rerun"}
NO_CHECK_FLAGS = {"-h", "--help", "--hydra-help", "-sc", "--shell-completion", "-i", "--info", "--version"}


def print_error(message: str) -> None:
    Console(stderr=True, soft_wrap=True).print(Text("error: ", style="bold red") + Text(message))


def report_error(exc: DlrunError) -> int:
    """Print a user error (with its traceback first under HYDRA_FULL_ERROR=1); returns its exit code."""
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        traceback.print_exception(exc)
    print_error(str(exc))
    return exc.exit_code


def config_dirs(flags: list[str]) -> list[str]:
    """The folders given with -cd/--config-dir DIR (or --config-dir=DIR)."""
    dirs = [v for f, v in zip(flags, flags[1:]) if f in ("-cd", "--config-dir")]
    return dirs + [f.split("=", 1)[1] for f in flags if f.startswith("--config-dir=")]


def split_argv(argv: list[str]) -> tuple[list[str], list[str]]:
    """Hydra's flags (with their values) and the overrides (KEY=VALUE, GROUP=OPTION)."""
    flags, overrides, it = [], [], iter(argv)
    for arg in it:
        if arg in VALUE_FLAGS:
            flags += [arg, next(it, "")]
        elif arg.startswith("-"):
            flags.append(arg)
        else:
            overrides.append(arg)
    return flags, overrides


def list_command(args: list[str]) -> int:
    from dlrun.catalog import BUILTIN, catalog

    kinds = list(BUILTIN)
    kind, pattern = (args + [None, "*"])[:2] if args else (None, "*")
    if kind is not None and kind not in kinds:
        singular = {k[:-1]: k for k in kinds}
        if kind in singular:
            kind = singular[kind]
        else:
            print_error(f"cannot list '{kind}'.{did_you_mean(kind, kinds)} Choose one of: {', '.join(kinds)}.")
            return 2
    import fnmatch

    for k in [kind] if kind else kinds:
        if not kind:
            print(f"{k}:")
        entries = {n: d for n, d in catalog(k).items() if fnmatch.fnmatch(n, (pattern or "*").lower())}
        width = max((len(n) for n in entries), default=0)
        for name, desc in entries.items():
            print(f"{'  ' if not kind else ''}{name:<{width}}  {desc}")
    return 0


HELP = """dlrun: train deep-learning models from config files.

Usage:
  dlrun [GROUP=OPTION ...] [KEY=VALUE ...]   train (default: model=mlp optimizer=adam dataset=digits)
  dlrun -m optimizer=sgd,adam optimizer.lr=0.1,0.01
                                             sweep over every combination (sweep.on_failure=continue|stop);
                                             the same command with the same hydra.sweep.dir=DIR resumes it
  dlrun resume=RUN_DIR [trainer.epochs=N]    continue an interrupted run in its own folder
  dlrun report DIR [--metric M] [--sort COLUMN[:asc|:desc]] [--top N]
                                             table, DIR/report.csv and plots of a run, a sweep or a folder of runs
  dlrun list [models|datasets|optimizers|schedulers|loggers] [PATTERN]
                                             what is registered, with a short description
  dlrun summary [OVERRIDES]                  the model's layers, output shapes and parameters, without training
  dlrun --cfg job [OVERRIDES]                print the composed config without running
  dlrun --hydra-help                         Hydra's own flags (-m, --cfg, -cd, ...)

Examples:
  dlrun model=cnn optimizer=adam
  dlrun trainer.epochs=5 trainer.batch_size=full model.hidden=[256,128] model.dropout=0.2
  dlrun debug=smoke                          two batches of each split, seconds (CI)
  dlrun experiment=digits_cnn                a recorded recipe
  dlrun -m hydra/launcher=joblib seed=0,1,2  jobs in parallel processes (hydra/launcher=slurm: on SLURM)
  dlrun -m hparams_search=digits_optuna hydra.sweep.dir=DIR
                                             an Optuna search; again with the same DIR continues it
  dlrun logger=tensorboard                   also TensorBoard event files in RUN/tb/

Config groups (choose one option each with GROUP=OPTION):
"""


def help_text() -> str:
    from dlrun.config import GROUPS, group_options

    width = max(len(g) for g in GROUPS) + 1
    lines = [f"  {g + ':':<{width}} {', '.join(group_options(g))}" for g in GROUPS]
    keys = ("seed, device (auto|cpu|cuda|mps), trainer.epochs, trainer.batch_size (N|full), optimizer.lr, "
            "trainer.early_stopping.patience, trainer.deterministic, hydra.run.dir")
    return HELP + "\n".join(lines) + f"\n\nKeys users type most: {keys}\nSee every key: dlrun --cfg job\n"


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def _app(cfg: DictConfig) -> dict | None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hc = HydraConfig.get()
    if hc.mode == RunMode.MULTIRUN:  # skip, resume or redo it; a ledger line; a failure is reported at once
        from dlrun.sweep import sweep_job

        return sweep_job(cfg, hc)
    from dlrun.plotter import Plotter

    plotter = Plotter.start()  # matplotlib loads in a helper process, on another core, while torch loads here
    from dlrun.runner import exit_code, train

    try:
        summary, _ = train(cfg, Path(hc.runtime.output_dir), plotter=plotter)
        plotter.close()
        code = exit_code(summary)  # non-zero only if interrupted
    except DlrunError as exc:
        code = report_error(exc)
    finally:
        plotter.cancel()  # a no-op once closed
    if code:
        sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "list":
        sys.exit(list_command(argv[1:]))
    if argv and argv[0] == "report":  # a table, CSV and plots of a run, a sweep or a folder of runs
        from dlrun.report import report_command

        sys.exit(report_command(argv[1:]))
    if argv and argv[0] == "summary":  # the model summary of a config, without training
        from dlrun.summary_command import summary_command

        sys.exit(summary_command(argv[1:]))
    if argv and argv[0] in ("-h", "--help"):  # our own page: Hydra's lists groups by composing ~90 times (1.5 s)
        print(help_text(), end="")
        sys.exit(0)
    from dlrun.config import check_overrides, guard_run_dir, register_plugin_configs, resume_overrides

    flags, overrides = split_argv(argv)
    try:
        register_plugin_configs()
        if not NO_CHECK_FLAGS & set(flags):
            overrides = resume_overrides(overrides)
            guard_run_dir(overrides)
            if any(not o.startswith("hydra.") for o in overrides):  # nothing to mistype otherwise
                check_overrides(overrides, config_dirs(flags))
    except DlrunError as exc:
        sys.exit(report_error(exc))
    sys.argv = [sys.argv[0], *flags, *overrides]
    from dlrun import sweep

    os.environ[sweep.RUN_ID_ENV] = uuid.uuid4().hex  # tags this launch's ledger lines
    planned = sweep.planned_jobs(overrides) if {"-m", "--multirun"} & set(flags) else None
    stopped, exiting = None, None
    try:
        _app()
    except KeyboardInterrupt:
        print_error("aborted by a second Ctrl-C; the last checkpoint written is intact")
        sys.exit(130)
    except sweep.SweepStopped:  # sweep.on_failure=stop
        stopped = "stop"
    except SystemExit as exc:  # e.g. a signal stopped a sweep: its table first, then the signal's exit code
        stopped, exiting = "signal", exc
    code = sweep.finish(argv, planned, stopped)  # None unless a sweep ran
    if exiting is not None:
        raise exiting
    if code:
        sys.exit(code)


def entry() -> None:
    """The `dlrun` console script: `main()`, then, after a successful run that loaded torch, a quick exit.

    Python's teardown of the modules that torch and torch._dynamo load takes 1 to 2 s here and writes
    nothing. So once all is written, the exit handlers are run (logging's flush, multiprocessing's child
    clean-up, ...), stdout and stderr flushed, and the process leaves without the teardown. Failures,
    interruptions, and processes with other live threads (a joblib sweep's executor) exit the usual way.
    """
    try:
        main()
    except SystemExit as exc:
        if exc.code:
            raise
    others = [t for t in threading.enumerate() if t is not threading.current_thread() and not t.daemon]
    if "torch" not in sys.modules or others:
        return
    atexit._run_exitfuncs()  # what the interpreter runs at exit before tearing the modules down
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    entry()
