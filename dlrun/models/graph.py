"""`graph`: a network of named nodes written in the config, the Keras Functional API as YAML.

    inputs:                      named inputs; by default one, `x`: the whole input tensor
      x: {}
      num: {features: numeric}   a subset of the flattened input: the dataset's column group(s) by name,
      cat: {features: [color, size]}    or column indices ([0, 3, 5]); `num: numeric` is short for it
    nodes:                       in order; a node reads inputs and earlier nodes only
      - {name: h1, input: x, layers: [flatten, linear:64, relu]}     layers: model=sequential's vocabulary
      - {name: h2, input: h1, layers: [linear:64]}
      - {name: sum, inputs: [h1, h2], merge: add, layers: [relu]}    merge, then the node's layers (if any)
      - {name: h3, input: sum, share: h2}                            h2's layers, the same weights, on sum
      - {name: out, input: h3, layers: [linear]}
    outputs: [out]               node names; several are concatenated along dim 1, in order
    outputs: [{node: a, target: species}, {node: b, target: width}]   one head per target of a table (its width)

Merges: add, multiply, average (inputs of one shape) and concat (along `dim`, default 1: channels of an image,
features of a vector). A bare `linear` ending an output node gives the dataset's outputs; with several outputs,
write each as `{node: NAME, size: K}` (the sizes add up to the outputs) and a bare `linear` there gives K.
Shapes are inferred node by node with a probe batch; any mistake (an unknown or later node, a cycle, a repeated
name, layers or merges that do not fit, an output that is no node, a node no output uses, an unknown feature
group) is a DlrunError naming the node and its input shapes, before any training.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Sequence

import torch
from torch import nn

from dlrun.errors import DlrunError, did_you_mean
from dlrun.models.base import Model
from dlrun.models.sequential import build_stack
from dlrun.registry import register_model

Shape = tuple[int, ...]
MERGES = ("add", "multiply", "average", "concat")
NODE_KEYS = ("name", "input", "inputs", "merge", "dim", "layers", "share")
DEFAULT_NODES = ({"name": "out", "input": "x", "layers": ["flatten", "linear"]},)


class Select(nn.Module):
    """Columns `index` of the flattened input; index_select over a buffer exports to ONNX and torch.export."""

    def __init__(self, index: Sequence[int]):
        super().__init__()
        self.register_buffer("index", torch.tensor(list(index), dtype=torch.long), persistent=False)

    def forward(self, x):
        return x.flatten(1).index_select(1, self.index)


@dataclass(frozen=True)
class Step:
    """One node at run time: merge its inputs (or take the one), then apply the layers of nodes[module]."""

    name: str
    inputs: tuple[str, ...]
    merge: str | None = None
    dim: int = 1
    module: str | None = None  # its own name, the name of the node it shares, or None (a merge alone)


def merge(kind: str, xs: list[torch.Tensor], dim: int = 1) -> torch.Tensor:
    if kind == "concat":
        return torch.cat(xs, dim)
    out = xs[0]
    for x in xs[1:]:
        out = out * x if kind == "multiply" else out + x
    return out / len(xs) if kind == "average" else out


def _probe(fn, shapes: list[Shape]) -> Shape:
    """The output shape of `fn` on zero batches of `shapes`, in eval mode and without gradients."""
    with torch.no_grad():
        return tuple(fn([torch.zeros(2, *s) for s in shapes]).shape[1:])


def _check_name(name, what: str) -> str:
    if not isinstance(name, str) or not name.isidentifier():
        raise DlrunError(f"{what} name {name!r}: names are identifiers (letters, digits, _; no digit first)")
    if hasattr(nn.ModuleDict, name):  # ModuleDict keys may not shadow its methods
        raise DlrunError(f"{what} name '{name}' is taken by torch (nn.ModuleDict.{name}); choose another")
    return name


def _columns(name: str, spec, features: dict | None, size: int) -> list[int]:
    """Column indices of the flattened input for input `name`'s `features:` (group names and/or indices)."""
    groups = {str(k): [int(i) for i in v] for k, v in (features or {}).items()}
    index = []
    for item in spec if isinstance(spec, (list, tuple)) else [spec]:
        if isinstance(item, int) and not isinstance(item, bool):
            index.append(item)
        elif str(item) in groups:
            index += groups[str(item)]
        else:
            known = f"the dataset's groups: {', '.join(groups)}" if groups else "this dataset names no feature groups"
            raise DlrunError(f"model.inputs.{name}: unknown feature group '{item}'.{did_you_mean(str(item), groups)} "
                             f"({known}; or give column indices)")
    bad = [i for i in index if not 0 <= i < size]
    if bad or not index:
        raise DlrunError(f"model.inputs.{name}: " + (f"column(s) {bad} outside the {size} features of the input"
                                                     if bad else "selects no columns"))
    return index


def _outputs(outputs, nodes: dict[str, dict], num_outputs: int,
             heads: dict[str, int] | None = None) -> tuple[list[str], dict[str, int | None]]:
    """Output node names, in order, and the size each must give (None: not said). An output written
    `{node: N, target: T}` gives the dataset's target T (its head's width); such outputs are put in the order of
    the dataset's targets, which is how the task reads the concatenated outputs."""
    entries = [outputs] if isinstance(outputs, (str, dict)) else list(outputs or [])
    if not entries:
        raise DlrunError("model.outputs is empty: name the node(s) that give the outputs, e.g. [out]")
    names, sizes, targets = [], {}, {}
    for entry in entries:
        name, size = (entry.get("node"), entry.get("size")) if isinstance(entry, dict) else (entry, None)
        if name not in nodes:
            raise DlrunError(f"model.outputs: '{name}' names no node.{did_you_mean(str(name), nodes)} "
                             f"Nodes: {', '.join(nodes)}")
        target = entry.get("target") if isinstance(entry, dict) else None
        if target is not None:
            if not heads or target not in heads:
                raise DlrunError(f"model.outputs: node '{name}' gives target '{target}', which is not one of the "
                                 f"dataset's targets of different kinds ({', '.join(heads or []) or 'it has none'}).")
            size, targets[target] = heads[target], name
        names.append(name)
        sizes[name] = int(size) if size is not None else num_outputs if len(entries) == 1 else None
    if targets:
        if sorted(targets) != sorted(heads) or len(targets) != len(names):
            raise DlrunError(f"model.outputs: give each of the dataset's targets ({', '.join(heads)}) one output "
                             "{node: NAME, target: TARGET}, and no other output.")
        names = [targets[t] for t in heads]
    return names, sizes


def _path(start: str, goal: str, deps: dict[str, list[str]]) -> list[str] | None:
    """A chain of dependencies start -> ... -> goal, if there is one."""
    stack, seen = [[start]], set()
    while stack:
        path = stack.pop()
        if path[-1] == goal:
            return path
        if path[-1] not in seen:
            seen.add(path[-1])
            stack += [path + [d] for d in deps.get(path[-1], [])]
    return None


def _node_specs(nodes) -> dict[str, dict]:
    """name -> node dict, in order, with `inputs` as a list (from `input` or `inputs`); keys and names checked."""
    specs: dict[str, dict] = {}
    for k, node in enumerate(nodes or []):
        if not isinstance(node, dict) or "name" not in node:
            raise DlrunError(f"model.nodes[{k}]={node!r}: write a node as a mapping with a name, e.g. "
                             "{name: h1, input: x, layers: [flatten, linear:64, relu]}")
        name = _check_name(node["name"], "node")
        for key in node:
            if key not in NODE_KEYS:
                raise DlrunError(f"node '{name}': unknown key '{key}'.{did_you_mean(str(key), NODE_KEYS)} "
                                 f"A node has: {', '.join(NODE_KEYS)}")
        if name in specs:
            raise DlrunError(f"node '{name}' is defined twice (model.nodes[{k}]); node names must be unique")
        if ("input" in node) == ("inputs" in node):
            raise DlrunError(f"node '{name}' needs `input: NAME` or `inputs: [NAME, ...]` (one of them)")
        ins = node["input"] if "input" in node else node["inputs"]
        ins = list(ins) if isinstance(ins, (list, tuple)) else [ins]
        if not all(isinstance(ref, str) for ref in [*ins, node.get("share", "")]):
            raise DlrunError(f"node '{name}': inputs and share are node or input names, got {ins} "
                             f"{node.get('share', '')}".rstrip())
        kind = node.get("merge")
        if kind is not None and kind not in MERGES:
            raise DlrunError(f"node '{name}': unknown merge '{kind}'.{did_you_mean(str(kind), MERGES)} "
                             f"Merges: {', '.join(MERGES)}")
        if (len(ins) > 1) != (kind is not None):
            raise DlrunError(f"node '{name}' " + (f"reads {len(ins)} inputs {ins}: say how to merge them, e.g. "
                             "merge: add (or multiply, average, concat)" if len(ins) > 1 else
                             f"merges ({kind}) but reads {len(ins)} input(s): list two or more in `inputs`"))
        if "share" in node and node.get("layers"):
            raise DlrunError(f"node '{name}' has both `layers` and `share`: it applies its own layers or another "
                             "node's, not both")
        if not node.get("layers") and "share" not in node and kind is None:
            raise DlrunError(f"node '{name}' does nothing: give it layers, a merge or share: NODE")
        specs[name] = {**node, "inputs": ins}
    if not specs:
        raise DlrunError("model.nodes is empty: list them, e.g. [{name: out, input: x, layers: [flatten, linear]}]")
    return specs


def _check_graph(specs: dict[str, dict], known: dict[str, Shape], outputs: list[str]) -> None:
    """Every name a node reads or shares is an input or an earlier node (so the listed order runs), and every
    node feeds an output."""
    deps = {name: spec["inputs"] + ([spec["share"]] if "share" in spec else []) for name, spec in specs.items()}
    order = list(specs)
    for name, refs in deps.items():
        for ref in refs:
            if ref in known or ref in order[:order.index(name)]:
                continue
            if ref not in specs:
                raise DlrunError(f"node '{name}' reads '{ref}', which is no input or node."
                                 f"{did_you_mean(str(ref), [*known, *specs])} Inputs: {', '.join(known)}; "
                                 f"nodes: {', '.join(specs)}")
            cycle = _path(ref, name, deps)
            if cycle:
                raise DlrunError(f"nodes form a cycle: {' -> '.join([name, *cycle])}; each node must read only "
                                 "inputs and nodes listed above it")
            raise DlrunError(f"node '{name}' reads '{ref}' before it is defined: nodes run in the order listed, "
                             f"so move '{ref}' above '{name}'")
    used, todo = set(), list(outputs)
    while todo:
        name = todo.pop()
        if name in specs and name not in used:
            used.add(name)
            todo += specs[name]["inputs"]
    for name in specs:
        if name not in used:
            raise DlrunError(f"node '{name}' is unused: no output ({', '.join(outputs)}) depends on it; "
                             "remove it or add it to model.outputs")


@register_model("graph")
class Graph(Model):
    """Named nodes of layers, merges and shared layers written in the config (Keras' Functional API as YAML)."""

    reads_features: ClassVar[bool] = True

    def __init__(self, input_shape: Sequence[int], num_outputs: int, inputs: dict | None = None,
                 nodes: Sequence[dict] = DEFAULT_NODES, outputs: Sequence = ("out",), features: dict | None = None,
                 heads: dict[str, int] | None = None):
        super().__init__()
        shape: Shape = tuple(int(s) for s in input_shape)
        self.inputs = nn.ModuleDict()  # the feature selections, by input name
        self.nodes = nn.ModuleDict()  # each node's own layers (an nn.Sequential), by node name
        self.about: dict[str, str] = {}  # input name -> what it selects, for the summary
        shapes: dict[str, Shape] = {}  # input or node name -> its output shape (no batch dimension)
        for name, spec in (inputs if inputs is not None else {"x": {}}).items():
            shapes[_check_name(name, "input")] = self._add_input(name, spec, shape, features)
        specs = _node_specs(nodes)
        for name in shapes.keys() & specs.keys():
            raise DlrunError(f"node '{name}' has the name of an input; names must be unique")
        self.outputs, sizes = _outputs(outputs, specs, num_outputs, heads)
        _check_graph(specs, shapes, self.outputs)
        self.steps: list[Step] = []  # the nodes in their (checked) order
        self.built_for: dict[str, Shape] = {}  # node name -> the input shape its own layers were built for
        for name, spec in specs.items():
            shapes[name] = self._add_node(name, spec, shapes, sizes.get(name), num_outputs)
        self._check_outputs(shapes, sizes, num_outputs)
        self.used_inputs = [n for n in self.about if any(n in s.inputs for s in self.steps)]

    def _add_input(self, name: str, spec, shape: Shape, features: dict | None) -> Shape:
        if isinstance(spec, (str, int, list, tuple)):
            spec = {"features": spec}  # `num: numeric` for `num: {features: numeric}`
        spec = dict(spec or {})
        if set(spec) - {"features"}:
            raise DlrunError(f"model.inputs.{name}: unknown key(s) {sorted(set(spec) - {'features'})}; an input is "
                             "{} (the whole input) or {features: GROUP | [GROUP, ...] | [INDEX, ...]}")
        if spec.get("features") is None:
            self.about[name] = "whole input"
            return shape
        index = _columns(name, spec["features"], features, torch.Size(shape).numel())
        self.inputs[name] = Select(index)
        self.about[name] = f"features {spec['features']}"
        return (len(index),)

    def _add_node(self, name: str, spec: dict, shapes: dict[str, Shape], size: int | None, num_outputs: int) -> Shape:
        """Check and build one node for its inputs' shapes; its output shape."""
        ins, kind, dim = spec["inputs"], spec.get("merge"), int(spec.get("dim", 1))
        reads = ", ".join(f"'{i}' {shapes[i]}" for i in ins)
        shape = shapes[ins[0]]
        if kind is not None:
            if kind != "concat" and len({shapes[i] for i in ins}) > 1:
                raise DlrunError(f"node '{name}' ({kind}) needs inputs of one shape, got {reads}")
            dim = dim if dim > 0 else dim + len(shape) + 1
            if kind == "concat" and not 1 <= dim <= len(shape):
                raise DlrunError(f"node '{name}' (concat) dim={spec.get('dim')} is not a dimension of its inputs "
                                 f"{reads}; dim 1 is the first after the batch")
            try:
                shape = _probe(lambda xs: merge(kind, xs, dim), [shapes[i] for i in ins])
            except RuntimeError as exc:
                raise DlrunError(f"node '{name}' (concat along dim {dim}) cannot join its inputs {reads}: "
                                 f"{str(exc).splitlines()[0]}") from None
        module = None
        if spec.get("layers"):
            source = f"the {kind} of {reads}" if kind else f"'{ins[0]}'"
            self.built_for[name] = shape
            layers, shape = build_stack(spec["layers"], shape, size if size is not None else num_outputs,
                                        where=f"node '{name}' layers", source=source, open_end=size is not None)
            self.nodes[name], module = nn.Sequential(layers), name
        elif "share" in spec:
            module = next(s.module for s in self.steps if s.name == spec["share"])
            if module is None:
                raise DlrunError(f"node '{name}' shares the layers of '{spec['share']}', which has none (a merge)")
            shape = self._shared(name, spec["share"], module, shape, reads)
        self.steps.append(Step(name, tuple(ins), kind, dim, module))
        return shape

    def _shared(self, name: str, share: str, module: str, shape: Shape, reads: str) -> Shape:
        """The output shape of node `module`'s layers on this node's input; a clear error when they do not fit."""
        layers = self.nodes[module].eval()
        try:
            return _probe(lambda xs: layers(xs[0]), [shape])
        except Exception as exc:  # noqa: BLE001 - whatever the shared layers raise on this shape
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DlrunError(f"node '{name}' shares the layers of '{share}', built for inputs of shape "
                             f"{self.built_for[module]}, which do not fit its input {reads}: {msg}") from None
        finally:
            layers.train()

    def _check_outputs(self, shapes: dict[str, Shape], sizes: dict[str, int | None], num_outputs: int) -> None:
        for name in self.outputs:
            if len(shapes[name]) != 1 or sizes[name] not in (None, shapes[name][0]):
                want = f"({sizes[name]},)" if sizes[name] is not None else "a flat (K,)"
                raise DlrunError(f"output node '{name}' gives shape {shapes[name]} but must give {want}: end it with "
                                 "flatten (if needed) and a linear layer")
        total = sum(shapes[name][0] for name in self.outputs)
        if total != num_outputs:
            parts = " + ".join(f"{shapes[n][0]} ('{n}')" for n in self.outputs)
            raise DlrunError(f"the outputs give {parts} = {total} values but the dataset needs {num_outputs}")

    # ---- running -------------------------------------------------------------------------------------
    def run(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every used input's and node's value for the batch `x`, computing nodes in their order."""
        values = {name: self.inputs[name](x) if name in self.inputs else x for name in self.used_inputs}
        for step in self.steps:
            xs = [values[name] for name in step.inputs]
            h = merge(step.merge, xs, step.dim) if step.merge else xs[0]
            values[step.name] = self.nodes[step.module](h) if step.module else h
        return values

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values = self.run(x)
        outs = [values[name] for name in self.outputs]
        return outs[0] if len(outs) == 1 else torch.cat(outs, 1)

    def summary_rows(self, input_shape: tuple[int, ...], device="cpu") -> list[tuple[str, str, str, int]]:
        """One row per input and per node: (name, what it reads, output shape, its own parameters)."""
        was_training = self.training
        try:
            with torch.no_grad():
                values = self.eval().run(torch.zeros(2, *input_shape, device=device))
        finally:
            self.train(was_training)

        def shape(name):
            return str(("N", *values[name].shape[1:])) if name in values else "- (unused)"

        rows = [(name, about, shape(name), 0) for name, about in self.about.items()]
        for s in self.steps:
            reads = f"{s.merge}({', '.join(s.inputs)})" if s.merge else s.inputs[0]
            if s.module and s.module != s.name:
                reads += f" (shares {s.module})"
            own = sum(p.numel() for p in self.nodes[s.name].parameters()) if s.module == s.name else 0
            rows.append((s.name, reads, shape(s.name), own))
        return rows
