"""`dlrun --help` (dlrun's own page, composed from the search path without Hydra) and `dlrun --version`."""
from __future__ import annotations

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
    from dlrun.config.search import GROUPS, group_options

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
