"""`dlrun summary [OVERRIDES]`: the Keras-style model summary for a config, without training.

The dataset is built to learn the input shape and the number of outputs, without downloading
anything (`dataset.download=false`). When it cannot be loaded (CIFAR offline, say), the shapes
of the datasets dlrun knows come from KNOWN_SHAPES, so `dlrun summary model=resnet dataset=cifar10`
works on any machine.
"""
from __future__ import annotations

from rich.console import Console

from dlrun.errors import DlrunError

# name -> (input shape without the batch dimension, number of classes): what the builders would return
KNOWN_SHAPES = {
    "digits": ((1, 8, 8), 10),
    "mnist": ((1, 28, 28), 10),
    "fashion_mnist": ((1, 28, 28), 10),
    "cifar10": ((3, 32, 32), 10),
    "cifar100": ((3, 32, 32), 100),
}


def model_and_shape(overrides: list[str]):
    """Compose the config like `dlrun OVERRIDES` would, then build (model, input_shape, num_outputs, note)."""
    from omegaconf import OmegaConf, open_dict

    from dlrun.config.composition import compose
    from dlrun.data import build_dataset
    from dlrun.models.build import build_model
    from dlrun.registry import TASKS
    from dlrun.train.build import task_for

    cfg = compose(overrides)
    if cfg.get("env") is not None:
        raise DlrunError(f"dlrun summary shows a model built for a dataset; model={cfg.model.name} env={cfg.env.id} "
                         "learns from an environment: its run prints its size (params) in the summary table")
    dcfg = cfg.dataset.copy()
    if "download" in dcfg:
        with open_dict(dcfg):
            dcfg.download = False  # a summary never downloads a data set
    try:
        data = build_dataset(dcfg)
        task_for(cfg, data)  # the outputs a run would build: as training shapes them for its task
        input_shape, num_outputs, tokens, vocab, note = tuple(data.input_shape), data.num_outputs, data.tokens, data.vocab, ""
        layout = (data.features, data.head_sizes())
    except DlrunError as exc:
        if cfg.dataset.name not in KNOWN_SHAPES:
            raise
        input_shape, num_outputs = KNOWN_SHAPES[cfg.dataset.name]  # images: no tokens, no vocabulary
        task = cfg.task or cfg.model.get("task")
        if task:  # e.g. outputs shaped as the inputs (autoencoders)
            num_outputs = TASKS.get(task).model_outputs(input_shape, num_outputs)
        tokens, vocab, layout = False, None, (None, None)
        note = (f"({cfg.dataset.name} is not on this machine, so its known shape is used: "
                f"{str(exc).splitlines()[0]})")
    model = build_model(OmegaConf.to_container(cfg.model, resolve=True), input_shape, num_outputs, cfg.dataset.name,
                        tokens, vocab, *layout)
    return model, input_shape, num_outputs, note, cfg


def summary_command(overrides: list[str]) -> int:
    from dlrun.errors import report_error

    if any(a in ("-h", "--help") for a in overrides):
        print("Usage: dlrun summary [GROUP=OPTION ...] [KEY=VALUE ...]\n"
              "Prints the model's layers, output shapes and parameter counts for the composed config, without "
              "training.\nExample: dlrun summary model=resnet dataset=cifar10")
        return 0
    console = Console()
    try:
        model, input_shape, num_outputs, note, cfg = model_and_shape(overrides)
    except DlrunError as exc:
        return report_error(exc)
    from dlrun.models.summary import print_summary

    console.print(f"model={cfg.model.name} dataset={cfg.dataset.name}: input {input_shape} -> {num_outputs} outputs")
    if note:
        console.print(note, style="yellow")
    print_summary(model, input_shape, console)
    return 0
