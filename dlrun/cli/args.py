"""The command line's vocabulary: Hydra's flags, dlrun's commands, the names `dlrun list` takes."""
from __future__ import annotations

VALUE_FLAGS = {"-c", "--cfg", "-p", "--package", "-cp", "--config-path", "-cn", "--config-name",
               "-cd", "--config-dir", "--experimental-rerun"}

NO_CHECK_FLAGS = {"-h", "--help", "--hydra-help", "-sc", "--shell-completion", "-i", "--info", "--version"}

COMMANDS = {"list": "what GROUP=OPTION accepts, per config group, with a description",
            "report": "a table, report.csv and plots of runs and sweeps",
            "summary": "a model's layers, output shapes and parameters, without training",
            "predict": "a trained run's predictions on new inputs or on its own data",
            "export": "a trained run as ONNX, TorchScript, torch.export (pt2) or safetensors",
            "serve": "trained runs behind HTTP: dynamic batching, versions, metrics, a skew guard",
            "play": "a trained agent's greedy episodes and returns (a run with env=...); --record FILE.gif"}

LIST_NAMES = {"models": "model", "datasets": "dataset", "optimizers": "optimizer", "schedulers": "scheduler",
              "losses": "loss", "loggers": "logger", "trainers": "trainer", "experiments": "experiment",
              "debug": "debug", "hparams_search": "hparams_search",
              "envs": "env"}  # `dlrun list NAME`: plural or singular

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
