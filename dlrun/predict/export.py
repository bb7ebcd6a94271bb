"""A trained run as a file other programs load: ONNX (checked with onnxruntime), TorchScript, torch.export's
`.pt2`, or safetensors. The exported graph takes raw inputs as the data source gives them (uint8 pixels,
token ids) and holds the normalisation, so a consumer cannot get the preprocessing wrong; the batch size is
free. Its metadata (class names, task, input spec, dlrun's version) travel inside the file."""
from __future__ import annotations

import io
import json
import re
import warnings
from pathlib import Path

import torch
from torch import nn

import dlrun
from dlrun.data.normalise import Normalise
from dlrun.errors import DlrunError
from dlrun.models.base import not_a_graph
from dlrun.train.checkpoint import atomic_write, save_safetensors

FORMATS = {"onnx": ".onnx", "torchscript": ".pt", "pt2": ".pt2", "safetensors": ".safetensors"}


class RawInputModel(nn.Module):
    """The model with its preprocessing in front: raw inputs in, the model's outputs out."""

    def __init__(self, normalise: Normalise, model: nn.Module):
        super().__init__()
        self.normalise, self.model = normalise, model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self.normalise(x))


def metadata(predictor) -> dict:
    """What a consumer of the file needs: the task, the input spec, the outputs' meaning, dlrun's version."""
    meta = predictor.meta
    return {"dlrun": dlrun.__version__, "task": meta["task"], "model": meta["model"]["name"],
            "dataset": meta["dataset"]["name"], "input_shape": ["batch", *meta["input_shape"]],
            "input_dtype": meta["input_dtype"], "inputs": "raw, as the data source gives them (normalisation inside)",
            "outputs": f"raw scores of task {meta['task']} (the softmax/sigmoid is not applied)",
            "classes": None if meta["tokens"] else meta.get("classes"),
            "vocab_size": len(meta.get("classes") or meta.get("vocab") or []) if meta["tokens"] else None,
            "epoch": predictor.epoch}


def example_input(predictor, batch: int = 2) -> torch.Tensor:
    """A batch of raw inputs of the right shape and dtype (zeros), to trace or export the graph with."""
    return torch.zeros(batch, *predictor.input_shape, dtype=predictor.input_dtype, device=predictor.device)


def export(predictor, fmt: str, out: Path) -> Path:
    """Write the run's model in `fmt` to `out`; a model that cannot be exported so is a DlrunError saying why."""
    module = RawInputModel(predictor.normalise, predictor.model).eval()
    meta, x = metadata(predictor), example_input(predictor)
    writers = {"onnx": export_onnx, "torchscript": export_torchscript, "pt2": export_pt2,
               "safetensors": export_safetensors}
    why = not_a_graph(predictor.model)
    if fmt != "safetensors" and why:
        raise DlrunError(f"model={meta['model']} cannot be exported as {fmt}: {why}. Export its weights with "
                         "--format safetensors.")
    if fmt != "safetensors" and not deterministic(module, x):
        raise DlrunError(f"model={meta['model']} cannot be exported as {fmt}: its forward draws random numbers (two "
                         "calls on the same input differ), so a graph of it could not be checked against it. Export "
                         "its weights with --format safetensors.")
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporters' notes on deprecations and tracing: not the user's
            writers[fmt](module, x, meta, out)
    except Exception as exc:  # noqa: BLE001  the exporters' own errors, said in one line
        out.unlink(missing_ok=True)  # nothing half-checked is left behind
        if isinstance(exc, DlrunError):
            raise
        others = ", ".join(f for f in FORMATS if f != fmt)
        raise DlrunError(f"model={meta['model']} cannot be exported as {fmt}: {first_line(exc)}. Try another "
                         f"format ({others}).") from None
    return out


def first_line(exc: BaseException) -> str:
    """The root cause of an exporter's error as "Type: its first line", without terminal colours (torch.onnx
    wraps torch.export's error in a page of advice)."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    lines = [ln.strip() for ln in re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).splitlines() if ln.strip()]
    return f"{type(exc).__name__}: {lines[0][:300] if lines else ''}".rstrip(": ")


@torch.no_grad()
def deterministic(module: nn.Module, x: torch.Tensor) -> bool:
    """Whether two forward passes on the same input agree (a GAN's forward samples noise: it does not)."""
    return torch.equal(module(x), module(x))


def _bytes_to(out: Path, data: bytes) -> None:
    atomic_write(out, lambda f: f.write(data), durable=False)


def export_onnx(module: nn.Module, x: torch.Tensor, meta: dict, out: Path) -> None:
    """torch.onnx (the torch.export-based exporter) with a free batch size; the metadata as ONNX metadata
    properties; then onnxruntime runs it once and its outputs must equal torch's."""
    import onnx

    buf = io.BytesIO()
    batch = torch.export.Dim("batch", min=1)
    program = torch.onnx.export(module, (x,), dynamo=True, input_names=["input"], output_names=["output"],
                                dynamic_shapes=({0: batch},), verbose=False)
    program.save(buf)
    model = onnx.load_from_string(buf.getvalue())
    model.metadata_props.add(key="dlrun", value=json.dumps(meta))
    _bytes_to(out, model.SerializeToString())
    check_onnx(out, module, x)


def check_onnx(path: Path, module: nn.Module, x: torch.Tensor, atol: float = 1e-5) -> None:
    """onnxruntime's outputs for `x` (and for a batch of another size) equal torch's within `atol`."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (x, torch.cat([x, x, x])[:3]):
        got = torch.from_numpy(session.run(None, {"input": batch.cpu().numpy()})[0])
        want = module(batch).float().cpu()
        if got.shape != want.shape or not torch.allclose(got, want, atol=atol, rtol=1e-4):
            raise DlrunError(f"the ONNX graph does not reproduce the model: onnxruntime's outputs differ from torch's "
                             f"by up to {(got - want).abs().max().item():.3g}; nothing was written.")


def export_torchscript(module: nn.Module, x: torch.Tensor, meta: dict, out: Path) -> None:
    """A trace, checked like ONNX: on `x` and on a batch of another size it must give the module's outputs (a
    trace fixes whatever a data-dependent branch did on the example)."""
    traced = torch.jit.trace(module, (x,), check_trace=False)
    for batch in (x, torch.cat([x, x, x])[:3]):
        got, want = traced(batch).float(), module(batch).float()
        if got.shape != want.shape or not torch.allclose(got, want, atol=1e-5, rtol=1e-4):
            raise DlrunError("the traced TorchScript does not reproduce the model on a batch of another size; "
                             "nothing was written.")
    buf = io.BytesIO()
    torch.jit.save(traced, buf, _extra_files={"dlrun.json": json.dumps(meta)})
    _bytes_to(out, buf.getvalue())


def export_pt2(module: nn.Module, x: torch.Tensor, meta: dict, out: Path) -> None:
    program = torch.export.export(module, (x,), dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))
    buf = io.BytesIO()
    torch.export.save(program, buf, extra_files={"dlrun.json": json.dumps(meta)})
    _bytes_to(out, buf.getvalue())


def export_safetensors(module: nn.Module, x: torch.Tensor, meta: dict, out: Path) -> None:
    """The weights (the normalisation's buffers included) and, as metadata, the description as JSON."""
    save_safetensors(module, out, {"dlrun": json.dumps(meta)})
