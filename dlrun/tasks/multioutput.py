"""Several targets of different kinds at once (a table's `dataset.target=[species, width]`): one output head per
target, each read by its own task (multiclass, binary, regression) with its own loss, the losses summed with
`loss.weights` (Keras' `loss_weights`). The model gives every head's outputs side by side, in the order of the
targets (model=graph: `outputs: [{node: a, target: species}, ...]`); the targets arrive as one column each.
Metrics are each head's own, prefixed by its target's name (`species_accuracy`, `width_r2`)."""
from __future__ import annotations

import torch
from torch import nn

from dlrun.errors import DlrunError
from dlrun.registry import TASKS
from dlrun.tasks.base import Task, register_task


class HeadsLoss(nn.Module):
    """sum over heads of weight * the head's own loss on its slice of the outputs and its column of the targets."""

    def __init__(self, heads: list[Task], slices: list[slice], weights: list[float]):
        super().__init__()
        self.losses = nn.ModuleList(h.loss_fn for h in heads)
        self.heads, self.slices, self.weights = heads, slices, weights

    def forward(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return sum(w * loss(out[:, s], h.from_column(y[:, i]))
                   for i, (h, loss, s, w) in enumerate(zip(self.heads, self.losses, self.slices, self.weights)))


@register_task
class MultiOutput(Task):
    """several targets of different kinds, one head each (classes and values together)"""

    name, losses = "multioutput", ("auto",)

    def __init__(self, loss_name, loss_fn, data=None, class_weight=None):
        super().__init__(loss_name, loss_fn, data, class_weight)
        self.specs = data["heads"]
        self.heads, self.slices = loss_fn.heads, loss_fn.slices

    @classmethod
    def build(cls, loss: dict, num_outputs: int, data: dict | None = None, class_weight=None) -> "MultiOutput":
        specs = (data or {}).get("heads")
        if not specs:
            raise DlrunError("task=multioutput needs several targets of different kinds, e.g. dataset=csv "
                             "dataset.target=[species,width].")
        options = dict(loss)
        if options.pop("name") != "auto":
            raise DlrunError("with several targets each has its task's loss: leave loss=auto, and choose another "
                             "per target with loss.outputs={name: mae}.")
        weights, chosen = dict(options.pop("weights", None) or {}), dict(options.pop("outputs", None) or {})
        names = [h["name"] for h in specs]
        for key, given in (("weights", weights), ("outputs", chosen)):
            unknown = sorted(set(given) - set(names))
            if unknown:
                raise DlrunError(f"loss.{key} names {', '.join(unknown)}, which are not targets ({', '.join(names)}).")
        heads, slices, at = [], [], 0
        for h in specs:
            heads.append(TASKS.get(h["task"]).build({**options, "name": chosen.get(h["name"], "auto")}, h["width"],
                                                    {"target_scale": h["scale"]}))
            slices.append(slice(at, at + h["width"]))
            at += h["width"]
        return cls("auto", HeadsLoss(heads, slices, [float(weights.get(n, 1.0)) for n in names]), data)

    def metrics(self, out, y, classes):
        metrics, extra = {}, {}
        for i, (spec, head, s) in enumerate(zip(self.specs, self.heads, self.slices)):
            target = head.from_column(y[:, i])
            m, e = head.metrics(out[:, s], target, spec["classes"])
            if head.classification:
                m = {"accuracy": head.hits(head.predict(out[:, s]), target).mean().item(), **m}
            metrics.update({f"{spec['name']}_{k}": v for k, v in m.items()})
            extra.update({f"{spec['name']}_{k}": v for k, v in e.items()})
        return metrics, extra

    def decode(self, out, classes, top_k=3):
        """Per input, each target's own prediction by its name: {outputs: {species: {class ...}, width: {value ...}}}."""
        per_head = [head.decode(out[:, s], spec["classes"], top_k)
                    for spec, head, s in zip(self.specs, self.heads, self.slices)]
        return [{"outputs": {spec["name"]: row[i] for i, spec in enumerate(self.specs)}} for row in zip(*per_head)]
