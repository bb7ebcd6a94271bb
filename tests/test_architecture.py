"""The shape of the code, checked: no import cycle (lazy imports included), model capabilities declared by
the models and never probed, no task-name switches outside the task classes, a short run pipeline."""
import ast
import inspect
import re
from pathlib import Path

import dlrun
from dlrun.train import pipeline

PACKAGE = Path(dlrun.__file__).parent
TASK_NAMES = ("multiclass", "binary", "multilabel", "regression", "reconstruction", "next_token", "generation",
              "seq2seq", "multioutput", "segmentation", "detection")


def sources():
    return {p: p.read_text() for p in PACKAGE.rglob("*.py")}


def test_no_import_cycle_lazy_imports_included():
    graph = {}
    for path, text in sources().items():
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        deps = set()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Import):
                deps |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                deps |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        graph[name] = deps
    graph = {m: {d for d in deps if d in graph and d not in (m, "dlrun")} for m, deps in graph.items() if m != "dlrun"}
    cycles = []
    for start in graph:  # a depth-first search from every module back to itself
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for dep in graph[node]:
                if dep == start:
                    cycles.append(path)
                elif dep not in path and len(path) < 12:
                    stack.append((dep, path + [dep]))
    assert not cycles, sorted({" -> ".join(c) for c in cycles})[:5]


def test_model_capabilities_are_declared_never_probed():
    probes = [f"{p.relative_to(PACKAGE)}: {line.strip()}" for p, text in sources().items()
              for line in text.splitlines() if re.search(r"\b(hasattr|getattr)\((self\.)?model\b", line)]
    assert not probes, probes


def test_no_code_outside_the_task_classes_asks_which_task_it_is():
    pattern = re.compile(r"(==|!=|\bin\b)\s*\(?\s*[\"'](" + "|".join(TASK_NAMES) + r")[\"']|task\.name\s*(==|!=|in\b)")
    found = [f"{p.relative_to(PACKAGE)}: {line.strip()}" for p, text in sources().items()
             if p.parent.name != "tasks" for line in text.splitlines() if pattern.search(line)]
    assert not found, found


def test_the_run_pipeline_reads_top_to_bottom_in_short_stages():
    lines = {name: len(inspect.getsource(fn).splitlines()) for name, fn in
             [("train", pipeline.train), ("setup", pipeline.setup), ("fit", pipeline.fit), ("test", pipeline.test),
              ("finish", pipeline.finish)]}
    assert lines["train"] <= 45, lines  # about 40 lines, docstring included
    assert all(n <= 50 for n in lines.values()), lines  # each stage fits on a screen


def test_a_model_that_declares_a_hook_must_define_it():
    import pytest

    from dlrun.models.base import Model
    from dlrun.train.loop import Loop

    with pytest.raises(TypeError, match="declares updates_itself = True but defines no train_step"):
        type("Half", (Model,), {"updates_itself": True})
    with pytest.raises(TypeError, match="declares can_sample = True but defines no sample"):
        type("Half", (Model,), {"can_sample": True})
    with pytest.raises(TypeError, match="abstract"):
        type("NoEpochs", (Loop,), {})()  # a loop must say what an epoch is


def test_every_model_output_and_task_input_kind_is_one_the_build_stage_can_name():
    from dlrun.models.base import Model, output_kind
    from dlrun.registry import MODELS, TASKS
    from dlrun.train.build import OUTPUT_KINDS

    models = {name: output_kind(MODELS.get(name)) for name in MODELS.names()}
    tasks = {name: TASKS.get(name).model_output for name in TASKS.names()}
    assert set(models.values()) <= set(OUTPUT_KINDS) and set(tasks.values()) <= set(OUTPUT_KINDS), (models, tasks)
    assert models["unet"] == tasks["segmentation"] == "pixels" and models["yolov1"] == tasks["detection"] == "grid"
    assert issubclass(MODELS.get("unet"), Model) and issubclass(MODELS.get("yolov1"), Model)
