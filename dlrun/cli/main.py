"""The `dlrun` command: dlrun's subcommands, its own --help and --version, and the Hydra app for runs and sweeps.

Start-up stays light: torch is imported only once a run really starts, so `--help`, `--cfg job`, `list` and
bad input answer in a fraction of a second.
"""
from __future__ import annotations

import atexit
import os
import sys
import threading
import time
import uuid
from pathlib import Path

from dlrun.cli.args import COMMANDS, NO_CHECK_FLAGS, config_dirs, split_argv
from dlrun.errors import TRACEBACKS_ENV, DlrunError, did_you_mean, print_error, report_error

DIRECT_FLAGS = {"-cd", "--config-dir"}  # a single run with no other Hydra flag needs no Hydra app (one composition)

def prepare(overrides: list[str], dirs: list[str], multirun: bool):
    """Check the command before anything runs: resume's saved overrides, the run folder, one composition with
    every check. A single run's folder is then chosen here, created and locked; Hydra, if it runs the job, is
    told to write nothing into it (dlrun records its config once the run has passed its own checks).
    Returns (the overrides for Hydra, the composed config, the run folder or None for a sweep)."""
    from dlrun.config.composition import compose
    from dlrun.config.overrides import override_key, quote, requote, run_dir_of
    from dlrun.config.resume import resume_overrides
    from dlrun.train import run_folder

    overrides = resume_overrides(requote(overrides), dirs)
    if multirun and os.environ.get("WORLD_SIZE", "1") != "1":
        raise DlrunError("a -m sweep under torchrun would run the whole sweep in every process; run the sweep "
                         "without torchrun and give each job its processes with trainer.devices=N.")
    if run_dir_of(overrides) is not None and not any(override_key(o) == "resume" for o in overrides):
        run_folder.refuse_if_taken(run_dir_of(overrides))
    cfg = compose(overrides, dirs)
    if multirun:
        return overrides, cfg, None
    run_dir = Path(str(cfg.hydra.run.dir))  # ${now:...} resolved once, here
    if os.environ.get("WORLD_SIZE", "1") != "1":  # under torchrun: one folder for all ranks, rank 0's
        from dlrun.train.distributed import agree_on_folder

        run_dir = agree_on_folder(run_dir, cfg.device, lambda: run_folder.lock(run_dir))
    else:
        run_folder.lock(run_dir)
    return [o for o in overrides if override_key(o) != "hydra.run.dir"] + [
        f"hydra.run.dir={quote(str(run_dir))}", "hydra.output_subdir=null"], cfg, run_dir


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "list":
        from dlrun.cli.listing import list_command

        sys.exit(list_command(argv[1:]))
    if argv and argv[0] == "report":  # a table, CSV and plots of a run, a sweep or a folder of runs
        from dlrun.cli.report import report_command

        sys.exit(report_command(argv[1:]))
    if argv and argv[0] == "predict":  # a trained run's predictions
        from dlrun.cli.predict import predict_command

        sys.exit(predict_command(argv[1:]))
    if argv and argv[0] == "play":  # a trained agent's greedy episodes (a run with env=...)
        from dlrun.cli.play import play_command

        sys.exit(play_command(argv[1:]))
    if argv and argv[0] == "serve":  # trained runs behind HTTP: batching, versions, metrics
        from dlrun.cli.serve import serve_command

        sys.exit(serve_command(argv[1:]))
    if argv and argv[0] == "export":  # a trained run as ONNX, TorchScript, torch.export or safetensors
        from dlrun.cli.export import export_command

        sys.exit(export_command(argv[1:]))
    if argv and argv[0] == "summary":  # the model summary of a config, without training
        from dlrun.cli.summary import summary_command

        sys.exit(summary_command(argv[1:]))
    flags, overrides = split_argv(argv)
    if "--version" in flags:
        from dlrun.cli.help import version_text

        print(version_text())
        sys.exit(0)
    if {"-h", "--help"} & set(flags):  # our own page: Hydra's lists groups by composing ~90 times (1.5 s)
        from dlrun.cli.help import help_text
        from dlrun.config.search import config_folders

        print(help_text(config_folders(config_dirs(flags))), end="")
        sys.exit(0)
    if "--experimental-rerun" in flags:  # it unpickles a file: a run folder must never run code
        print_error("--experimental-rerun is not supported: it unpickles a file, and dlrun never runs code from a "
                    "run folder. Re-run with the run's overrides instead: `dlrun resume=RUN_DIR`, or the overrides "
                    "in RUN_DIR/.hydra/overrides.yaml.")
        sys.exit(2)
    if {"-sc", "--shell-completion"} & set(flags) and "query=bash" in overrides:
        from dlrun.cli.completion import complete

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
    from dlrun.cli.app import hydra_app, run_direct, unexpected  # Hydra: only for what composes or runs

    multirun = bool({"-m", "--multirun"} & set(flags))
    direct = None
    try:
        if not NO_CHECK_FLAGS & set(flags) and not {"-c", "--cfg"} & set(flags):
            overrides, cfg, run_dir = prepare(overrides, config_dirs(flags), multirun)
            if run_dir is not None and all(f in DIRECT_FLAGS or f in config_dirs(flags)
                                           or f.startswith(("-cd=", "--config-dir=")) for f in flags):
                from dlrun.config.overrides import is_hydra_override

                direct = (cfg, run_dir, [o for o in overrides if not is_hydra_override(o)])
        elif not NO_CHECK_FLAGS & set(flags):  # --cfg: checked, not run
            from dlrun.config.composition import compose
            from dlrun.config.overrides import requote
            from dlrun.config.resume import resume_overrides

            overrides = resume_overrides(requote(overrides), config_dirs(flags))
            compose(overrides, config_dirs(flags))
    except DlrunError as exc:
        sys.exit(report_error(exc))
    sys.argv = [sys.argv[0], *flags, *overrides]
    from dlrun.sweep import finish as sweep
    from dlrun.sweep.jobs import SweepStopped
    from dlrun.sweep.ledger import RUN_ID_ENV

    os.environ[RUN_ID_ENV] = uuid.uuid4().hex  # tags this launch's ledger lines
    os.environ.setdefault(TRACEBACKS_ENV, "1" if os.environ.get("HYDRA_FULL_ERROR") == "1" else "0")
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra re-raises what escapes it, and dlrun says it in one line
    planned = sweep.planned_jobs(overrides) if multirun else None
    launched_at = time.time()
    stopped, exiting, code = None, None, None
    from dlrun.train import startup

    startup.pause()  # no garbage collection while torch loads; the pipeline resumes it once the job is built
    try:
        run_direct(*direct) if direct else hydra_app()
    except KeyboardInterrupt:
        print_error("aborted by a second Ctrl-C; the last checkpoint written is intact")
        sys.exit(130)
    except SweepStopped:  # sweep.on_failure=stop
        stopped = "stop"
    except SystemExit as exc:  # e.g. a signal stopped a sweep: its table first, then the signal's exit code
        stopped, exiting = "signal", exc
    except Exception as exc:  # noqa: BLE001  what escaped Hydra
        if multirun and sweep.workers_died(exc, planned, launched_at):
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
