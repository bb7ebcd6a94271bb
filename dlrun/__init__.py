"""dlrun: a config-driven deep-learning experiment runner.

    import dlrun
    result = dlrun.run(["model=cnn", "trainer.epochs=3"])
    result["summary"]["test_accuracy"], result["history"][-1]["val_loss"]
    dlrun.load(result["run_dir"]).predict(images)  # raw inputs (uint8 pixels, ...), or file paths

Heavy imports (torch) happen inside functions, so `import dlrun` and `dlrun --help` stay fast.
"""
__version__ = "0.1.0"


def run(overrides: list[str] | None = None, run_dir: str | None = None) -> dict:
    """Train with the same config tree as the CLI; returns {"summary", "history", "run_dir"}."""
    from dlrun.api import run as _run

    return _run(overrides or [], run_dir)


def load(run: str, checkpoint: str = "best", device: str = "cpu"):
    """A trained run as a predictor: `dlrun.load("outputs/...").predict(inputs)` (raw inputs, or file paths)."""
    from dlrun.predict.predictor import Predictor

    return Predictor.load(run, checkpoint, device)


def __getattr__(name):  # timm-style helpers without importing torch at `import dlrun`
    if name in ("create_model", "list_models", "register_model", "register_dataset"):
        from dlrun import registry

        return getattr(registry, name)
    raise AttributeError(name)
