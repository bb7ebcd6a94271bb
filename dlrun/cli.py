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

from dlrun.config import CONF_DIR
from dlrun.errors import TRACEBACKS_ENV, DlrunError, did_you_mean, print_error, report_error, tracebacks_wanted

VALUE_FLAGS = {"-c", "--cfg", "-p", "--package", "-cp", "--config-path", "-cn", "--config-name",
               "-cd", "--config-dir", "--experimental-rerun"}
NO_CHECK_FLAGS = {"-h", "--help", "--hydra-help", "-sc", "--shell-completion", "-i", "--info", "--version"}
COMMANDS = {"list": "what GROUP=OPTION accepts, per config group, with a description",
            "report": "a table, report.csv and plots of runs and sweeps",
            "summary": "a model's layers, output shapes and parameters, without training"}
LIST_NAMES = {"models": "model", "datasets": "dataset", "optimizers": "optimizer", "schedulers": "scheduler",
              "losses": "loss", "loggers": "logger", "trainers": "trainer", "experiments": "experiment",
              "debug": "debug", "hparams_search": "hparams_search"}  # `dlrun list NAME`: plural or singular


def config_dirs(flags: list[str]) -> list[str]:
    """The folders given with -cd/--config-dir DIR (or -cd=DIR, --config-dir=DIR)."""
    dirs = [v for f, v in zip(flags, flags[1:]) if f in ("-cd", "--config-dir")]
    return dirs + [f.split("=", 1)[1] for f in flags if f.startswith(("--config-dir=", "-cd="))]


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
    """`dlrun list [GROUP] [PATTERN] [-cd DIR]`: each option of each group, as GROUP=OPTION accepts it."""
    import fnmatch

    from dlrun.config import GROUPS, config_folders, describe_options

    flags, words = split_argv(args)
    names = {**LIST_NAMES, **{g: g for g in GROUPS}}
    kind = words[0] if words else None
    if kind is not None and kind not in names:
        print_error(f"cannot list '{kind}'.{did_you_mean(kind, LIST_NAMES)} Choose one of: {', '.join(LIST_NAMES)}.")
        return 2
    pattern = (words[1] if len(words) > 1 else "*").lower()
    folders = config_folders(config_dirs(flags))
    groups = [names[kind]] if kind else list(GROUPS)
    for group in groups:
        entries = {n: d for n, d in describe_options(group, folders).items() if fnmatch.fnmatch(n.lower(), pattern)}
        if not kind:
            print(f"{group}:")
        width = max((len(n) for n in entries), default=0)
        for name, desc in entries.items():
            print(f"{'  ' if not kind else ''}{name:<{width}}  {desc}".rstrip())
    return 0


HELP = """dlrun: train deep-learning models from config files.

Usage:
  dlrun [GROUP=OPTION ...] [KEY=VALUE ...]   train (default: model=mlp optimizer=adam dataset=digits)
  dlrun -m optimizer=sgd,adam optimizer.lr=0.1,0.01
                                             sweep over every combination (sweep.on_failure=continue|stop);
                                             the same command with the same hydra.sweep.dir=DIR resumes it
  dlrun resume=RUN_DIR [trainer.epochs=N] [optimizer.lr=X]
                                             continue an interrupted run in its own folder
  dlrun report DIR [DIR ...] [--metric M] [--sort COLUMN[:asc|:desc]] [--top N]
                                             table, report.csv and plots of runs, sweeps or folders of runs
  dlrun list [GROUP] [PATTERN]               what GROUP=OPTION accepts (models, optimizers, experiments, ...)
  dlrun summary [OVERRIDES]                  the model's layers, output shapes and parameters, without training
  dlrun --cfg job [OVERRIDES]                print the composed config without running
  dlrun --version                            dlrun's version, and torch's, Hydra's and Python's
  dlrun --hydra-help                         Hydra's own flags (-m, --cfg, -cd DIR, ...)

Examples:
  dlrun model=cnn optimizer=adam
  dlrun trainer.epochs=5 trainer.batch_size=full model.hidden=[256,128] model.dropout=0.2
  dlrun debug=smoke                          two batches of each split, seconds (CI)
  dlrun experiment=digits_cnn                a recorded recipe
  dlrun -cd myconf experiment=mine           your own configs: myconf/GROUP/OPTION.yaml
  dlrun -m hydra/launcher=joblib seed=0,1,2  jobs in parallel processes (hydra/launcher=slurm: on SLURM)
  dlrun -m hparams_search=digits_optuna hydra.sweep.dir=DIR
                                             an Optuna search; again with the same DIR continues it
  dlrun logger=tensorboard                   also TensorBoard event files in RUN/tb/

Config groups (choose one option each with GROUP=OPTION):
"""


def help_text(folders=None) -> str:
    from dlrun.config import GROUPS, group_options

    width = max(len(g) for g in GROUPS) + 1
    lines = [f"  {g + ':':<{width}} {', '.join(group_options(g, folders))}" for g in GROUPS]
    keys = ("seed, device (auto|cpu|cuda|mps), trainer.epochs, trainer.batch_size (N|full), optimizer.lr, "
            "trainer.early_stopping.patience, trainer.deterministic, hydra.run.dir")
    return HELP + "\n".join(lines) + f"\n\nKeys users type most: {keys}\nSee every key: dlrun --cfg job\n"


def version_text() -> str:
    import platform
    from importlib.metadata import PackageNotFoundError, version

    import hydra

    import dlrun

    try:
        torch = version("torch")
    except PackageNotFoundError:
        torch = "not installed"
    return f"dlrun {dlrun.__version__} (torch {torch}, Hydra {hydra.__version__}, Python {platform.python_version()})"


def complete(line: str) -> tuple[str | None, str]:
    """Bash completion (`dlrun -sc query=bash` with COMP_LINE=LINE): (the words to offer, or None to let Hydra
    complete the overrides, and the line Hydra should then see: a subcommand taking overrides is left out)."""
    program, *words = line.split() or [""]
    current = "" if line.endswith(" ") or not words else words[-1]
    before = words if current == "" else words[:-1]
    if before and before[0] == "list":
        return (" ".join(LIST_NAMES) if len(before) == 1 else ""), line
    if before and before[0] == "report":
        return "", line  # folders: the shell's own file completion (the script's `-o default`)
    if before and before[0] == "summary":
        return None, line.replace(" summary", "", 1)
    if not before and current and "=" not in current:
        matches = [c for c in COMMANDS if c.startswith(current)]
        if matches:
            return " ".join(matches), line
    return None, line


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
    from dlrun.runner import exit_code, train, translated_errors

    run_dir = Path(hc.runtime.output_dir)
    try:
        summary, _ = train(cfg, run_dir, plotter=plotter, overrides=list(hc.overrides.task))
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


def prepare(overrides: list[str], dirs: list[str], multirun: bool) -> list[str]:
    """Check the command before Hydra runs it: resume's saved overrides, the run folder, one composition with
    every check. A single run's folder is then chosen here, created and locked, and Hydra is told to write
    nothing into it (dlrun records its config once the run has passed its own checks)."""
    from dlrun import run_folder
    from dlrun.config import compose, guard_run_dir, override_key, quote, requote
    from dlrun.resume import resume_overrides

    overrides = resume_overrides(requote(overrides), dirs)
    guard_run_dir(overrides)
    cfg = compose(overrides, dirs)
    if multirun:
        return overrides
    run_dir = Path(str(cfg.hydra.run.dir))  # ${now:...} resolved once, here
    run_folder.lock(run_dir)
    return [o for o in overrides if override_key(o) != "hydra.run.dir"] + [
        f"hydra.run.dir={quote(str(run_dir))}", "hydra.output_subdir=null"]


def unexpected(exc: Exception) -> int:
    """An error that escaped Hydra (its own file writes, a sweep job's composition): one line, or the
    traceback when asked for; returns the exit code."""
    from hydra.errors import HydraException

    from dlrun import run_folder

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
    flags, overrides = split_argv(argv)
    if "--version" in flags:
        print(version_text())
        sys.exit(0)
    if {"-h", "--help"} & set(flags):  # our own page: Hydra's lists groups by composing ~90 times (1.5 s)
        from dlrun.config import config_folders

        print(help_text(config_folders(config_dirs(flags))), end="")
        sys.exit(0)
    if "--experimental-rerun" in flags:  # it unpickles a file: a run folder must never run code
        print_error("--experimental-rerun is not supported: it unpickles a file, and dlrun never runs code from a "
                    "run folder. Re-run with the run's overrides instead: `dlrun resume=RUN_DIR`, or the overrides "
                    "in RUN_DIR/.hydra/overrides.yaml.")
        sys.exit(2)
    if {"-sc", "--shell-completion"} & set(flags) and "query=bash" in overrides:
        words, os.environ["COMP_LINE"] = complete(os.environ.get("COMP_LINE", ""))
        if words is not None:
            print(words)
            sys.exit(0)
    bare = [o for o in overrides if "=" not in o and not o.startswith(("~", "+"))]
    if bare and not NO_CHECK_FLAGS & set(flags):
        first = bare[0]
        what = f"unknown command '{first}'" if overrides[0] == first else f"unexpected argument '{first}'"
        print_error(f"{what}.{did_you_mean(first, COMMANDS)} Commands: {', '.join(COMMANDS)} (see dlrun --help); "
                    "everything else is GROUP=OPTION or KEY=VALUE.")
        sys.exit(2)
    multirun = bool({"-m", "--multirun"} & set(flags))
    try:
        if not NO_CHECK_FLAGS & set(flags) and not {"-c", "--cfg"} & set(flags):
            overrides = prepare(overrides, config_dirs(flags), multirun)
        elif not NO_CHECK_FLAGS & set(flags):  # --cfg: checked, not run
            from dlrun.config import compose, requote

            overrides = requote(overrides)
            compose(overrides, config_dirs(flags))
    except DlrunError as exc:
        sys.exit(report_error(exc))
    sys.argv = [sys.argv[0], *flags, *overrides]
    from dlrun import sweep

    os.environ[sweep.RUN_ID_ENV] = uuid.uuid4().hex  # tags this launch's ledger lines
    os.environ.setdefault(TRACEBACKS_ENV, "1" if os.environ.get("HYDRA_FULL_ERROR") == "1" else "0")
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra re-raises what escapes it, and dlrun says it in one line
    planned = sweep.planned_jobs(overrides) if multirun else None
    stopped, exiting, code = None, None, None
    try:
        _app()
    except KeyboardInterrupt:
        print_error("aborted by a second Ctrl-C; the last checkpoint written is intact")
        sys.exit(130)
    except sweep.SweepStopped:  # sweep.on_failure=stop
        stopped = "stop"
    except SystemExit as exc:  # e.g. a signal stopped a sweep: its table first, then the signal's exit code
        stopped, exiting = "signal", exc
    except Exception as exc:  # noqa: BLE001  what escaped Hydra
        if multirun and sweep.workers_died(exc, planned):
            stopped = "killed"
        else:
            code = unexpected(exc)
    if multirun:
        code = sweep.finish(argv, planned, stopped) or code  # None unless a sweep ran
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
