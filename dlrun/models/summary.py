"""A Keras-style `summary()`: each layer's output shape and parameter count, from one dry forward pass."""
from __future__ import annotations

import torch
from rich.console import Console
from rich.table import Table
from torch import nn

from dlrun.models.base import summary_rows, takes_tokens


def count_params(model: nn.Module, trainable: bool | None = True) -> int:
    return sum(p.numel() for p in model.parameters() if trainable is None or p.requires_grad == trainable)


def layer_table(model: nn.Module, input_shape: tuple[int, ...], device="cpu") -> list[tuple[str, str, int]]:
    """(layer name, output shape, parameters) for every leaf module and every module with weights of its own,
    in call order. A module that uses a child's weights without calling it (attention's out_proj) counts
    them in its own row, and modules the forward does not call come last, so the rows add up to the total."""
    rows, hooks, counted = [], [], set()

    def hook(name):
        def fn(module, inputs, output):
            if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
                output = output[0]  # an RNN's (output, h_n), attention's (output, weights)
            shape = str(("N",) + tuple(output.shape)[1:]) if isinstance(output, torch.Tensor) else "-"
            mods = [m for m in module.modules() if m is module or m not in counted]
            counted.update(mods)
            label = f"{name} ({type(module).__name__})" if name else f"{type(module).__name__} (own weights)"
            rows.append((label, shape,
                         sum(p.numel() for m in mods for p in m.parameters(recurse=False))))
        return fn

    hooked = [(name, m) for name, m in model.named_modules()
              if not list(m.children()) or list(m.parameters(recurse=False))]
    for name, m in hooked:
        hooks.append(m.register_forward_hook(hook(name)))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            dtype = torch.long if takes_tokens(model) else torch.float32  # token ids for text
            model(torch.zeros(2, *input_shape, device=device, dtype=dtype))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    for name, m in hooked:  # not called by forward (a GAN's discriminator): listed after, without a shape
        if m not in counted:
            mods = [d for d in m.modules() if d not in counted]
            counted.update(mods)
            rows.append((f"{name} ({type(m).__name__})", "- (not in forward)",
                         sum(p.numel() for d in mods for p in d.parameters(recurse=False))))
    return rows


def print_summary(model: nn.Module, input_shape: tuple[int, ...], console: Console, device="cpu") -> None:
    table = Table(title=f"Model: {type(model).__name__}", title_justify="left")
    rows = summary_rows(model, input_shape, device)  # a model's own table (a graph's nodes), else one row per layer
    for column in ("Node", "Inputs") if rows is not None else ("Layer (type)",):
        table.add_column(column)
    table.add_column("Output shape")
    table.add_column("Param #", justify="right")
    for *cells, n in rows if rows is not None else layer_table(model, input_shape, device):
        table.add_row(*cells, f"{n:,}")
    total, trainable = count_params(model, None), count_params(model, True)
    size_mb = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
    table.caption = (f"Total params: {total:,} ({size_mb:.2f} MB)   Trainable: {trainable:,}   "
                     f"Non-trainable: {total - trainable:,}")
    console.print(table)
