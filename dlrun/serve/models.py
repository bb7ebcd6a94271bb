"""The served model versions. Each run folder given to `dlrun serve` (or added later through the admin endpoint) is
a version of a model name: versions count 1, 2, ... per name in the order they were loaded; the default version of
a name is the newest one unless a version was pinned (POST /v1/models/NAME/default), which switches or rolls back
without a restart."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from dlrun.errors import DlrunError
from dlrun.serve.batching import Batcher
from dlrun.serve.decode import Inputs
from dlrun.serve.drift import Drift
from dlrun.serve.errors import ServeError

SUMMARY_PREFIXES = ("test_", "val_", "best_", "train_")  # what /v1/models shows of summary.json


@dataclass
class Settings:
    """How the versions are run: batching, worker threads, device, checkpoint, limits."""

    max_batch: int = 64
    batch_timeout_ms: float = 5.0
    workers: int = 1
    device: str = "cpu"
    checkpoint: str = "best"
    max_body_bytes: int = 16 * 2**20
    admin: bool = False


@dataclass
class ModelVersion:
    """One run folder, loaded: its predictor (dlrun predict's), batching queue and skew guard."""

    name: str
    number: int
    run: Path
    predictor: object
    summary: dict
    metrics: object
    drift: Drift | None = None
    batcher: Batcher | None = None
    is_default: bool = False
    max_batch: int = 64
    loaded_at: float = field(default_factory=time.time)

    @property
    def labels(self) -> tuple[str, str]:
        return self.name, str(self.number)

    def start(self, settings: Settings) -> None:
        """Its queue, on the running event loop."""
        self.max_batch = settings.max_batch
        self.batcher = Batcher(self.run_batch, settings.max_batch, settings.batch_timeout_ms / 1000, settings.workers,
                               name=f"dlrun-{self.name}-v{self.number}")
        self.batcher.start()
        self._batch_size = self.metrics.batch_size.labels(*self.labels)

    async def predict(self, inputs: Inputs) -> list[dict]:
        """The decoded predictions of one request's inputs, computed in a batch with the requests around it."""
        return await self.batcher.submit(inputs, inputs.size)

    def run_batch(self, items: list[Inputs]) -> list:
        """In a worker thread: one forward pass over the raw inputs of all `items`, split back per request and
        decoded by the task, as `dlrun predict` decodes; text prompts one by one. One outcome per item."""
        outcomes: list = [None] * len(items)
        arrays = [(i, it) for i, it in enumerate(items) if it.raw is not None]
        outputs = self._outputs([it.raw for _, it in arrays]) if arrays else []
        for top_k in {it.top_k for _, it in arrays}:  # one decode per batch (per top_k asked), split per request
            group = [(i, out) for (i, it), out in zip(arrays, outputs) if it.top_k == top_k]
            for i, out in group:
                if isinstance(out, Exception):
                    outcomes[i] = out  # its forward pass failed
            group = [(i, out) for i, out in group if not isinstance(out, Exception)]
            if not group:
                continue
            try:
                preds = self.predictor.task.decode(torch.cat([out for _, out in group]), self.predictor.classes, top_k)
            except Exception as exc:  # noqa: BLE001 - fails these requests only
                for i, _ in group:
                    outcomes[i] = exc
                continue
            at = 0
            for i, out in group:
                outcomes[i], at = preds[at:at + len(out)], at + len(out)
        for i, it in enumerate(items):
            if it.prompts is not None:
                outcomes[i] = self._texts(it)
        return outcomes

    def _outputs(self, raws: list[torch.Tensor]) -> list:
        """The model's outputs per request: one forward pass for all; should it fail, each request alone."""
        if len({r.dtype for r in raws}) > 1:
            raws = [r.float() for r in raws]  # as `dlrun predict` joins inputs of mixed dtypes
        raw = torch.cat(raws) if len(raws) > 1 else raws[0]
        try:
            out = self.predictor.outputs(raw, batch_size=self.max_batch)  # a request larger than that: in parts
        except Exception as exc:  # noqa: BLE001 - each was checked alone; find the one that fails
            if len(raws) == 1:
                return [exc]
            return [part for r in raws for part in self._outputs([r])]
        self._batch_size.observe(len(raw))
        if self.drift is not None:
            self.drift.update(raw)
        return list(out.split([len(r) for r in raws]))

    def _texts(self, inputs: Inputs):
        from dlrun.predict.text import text_answer, translations  # `dlrun predict --text`'s own code

        try:
            if self.predictor.meta.get("text"):  # a sequence-to-sequence model: the prompts translated, as one batch
                self._batch_size.observe(len(inputs.prompts))
                return translations(self.predictor, inputs.prompts)[1]
            self._batch_size.observe(1)
            return [{"text": text_answer(self.predictor, p, inputs.length)} for p in inputs.prompts]
        except DlrunError as exc:
            return ServeError(422, "text", str(exc))
        except Exception as exc:  # noqa: BLE001
            return exc

    def describe(self) -> dict:
        """What GET /v1/models says of this version."""
        p, meta = self.predictor, self.predictor.meta
        kind = ("image (base64) or numbers" if _image(p.input_shape) else "text or token ids" if meta["tokens"]
                else "objects {column: value} or numbers" if meta.get("table") else "numbers")
        spec = {"shape": list(p.input_shape), "dtype": meta["input_dtype"], "scale": meta["scale"], "accepts": kind}
        if meta.get("table"):
            spec["columns"] = [c["name"] for c in meta["table"]["columns"]]
        metrics = {k: v for k, v in self.summary.items()
                   if k.startswith(SUMMARY_PREFIXES) and isinstance(v, (int, float)) and not isinstance(v, bool)}
        return {"version": self.number, "default": self.is_default, "run": str(self.run), "checkpoint": str(p.source),
                "epoch": p.epoch, "task": meta["task"], "model": meta["model"]["name"],
                "dataset": meta["dataset"]["name"], "classes": p.classes, "input": spec, "metrics": metrics,
                "loaded_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.loaded_at))}

    async def close(self) -> None:
        if self.batcher is not None:
            await self.batcher.close()


def load(run: str | Path, settings: Settings):
    """(predictor, summary.json's contents) of a run folder: the checkpoint verified and read as `dlrun predict`
    reads it (never unpickling code), or a DlrunError. Reads only; the run folder is left as it was."""
    from dlrun.predict.predictor import Predictor

    run = Path(run)
    predictor = Predictor.load(run, settings.checkpoint, settings.device)
    if predictor.meta.get("table"):
        import pandas  # noqa: F401 - imported now, not by the first request

    try:
        summary = json.loads((run / "summary.json").read_text())
    except (OSError, ValueError):
        summary = {}
    return predictor, summary if isinstance(summary, dict) else {}


class Models:
    """Every served version by model name, and each name's default version."""

    def __init__(self):
        self._names: dict[str, dict[int, ModelVersion]] = {}
        self._pinned: dict[str, int] = {}
        self.loading = 0  # runs being loaded: a request for an unknown name is a 503 meanwhile, not a 404

    def versions(self) -> list[ModelVersion]:
        return [v for versions in self._names.values() for v in versions.values()]

    def names(self) -> list[str]:
        return list(self._names)

    def add(self, name: str, run: Path, predictor, summary: dict, metrics, settings: Settings) -> ModelVersion:
        """A loaded run as the next version of `name`; it becomes the default unless one is pinned."""
        versions = self._names.setdefault(name, {})
        number = max(versions, default=0) + 1
        version = ModelVersion(name, number, Path(run), predictor, summary, metrics, Drift.of(predictor.meta))
        version.start(settings)
        versions[number] = version
        self._mark_default(name)
        return version

    def get(self, name: str, version: str | int | None = None) -> ModelVersion:
        """The version asked for (the default one when None); unknown names and versions are 404s."""
        versions = self._names.get(name)
        if versions is None:
            if self.loading:
                raise ServeError(503, "loading", f"model '{name}' is not loaded yet: the server is still loading "
                                 "its models (GET /health says when it is ready).")
            known = ", ".join(self._names) or "none"
            raise ServeError(404, "unknown_model", f"no model '{name}' is served (served: {known}).")
        if version is None:
            return versions[self.default_number(name)]
        number = _number(version)
        if number not in versions:
            raise ServeError(404, "unknown_version", f"model '{name}' has no version {version!r} "
                             f"(versions: {', '.join(map(str, versions))}).")
        return versions[number]

    def default_number(self, name: str) -> int:
        return self._pinned.get(name, max(self._names[name]))

    def pin(self, name: str, version) -> ModelVersion:
        """Make `version` the default of `name` (None: back to the newest)."""
        if version is None:
            self.get(name)
            self._pinned.pop(name, None)
        else:
            self._pinned[name] = self.get(name, version).number
        self._mark_default(name)
        return self.get(name)

    def describe(self) -> list[dict]:
        return [{"name": name, "default": self.default_number(name), "pinned": name in self._pinned,
                 "versions": [v.describe() for v in versions.values()]} for name, versions in self._names.items()]

    def _mark_default(self, name: str) -> None:
        default = self.default_number(name)
        for number, v in self._names[name].items():
            v.is_default = number == default

    async def close(self) -> None:
        for v in self.versions():
            await v.close()


def _number(version) -> int | None:
    text = str(version).strip().lower().removeprefix("v")
    return int(text) if text.isdigit() else None


def _image(shape: tuple) -> bool:
    from dlrun.tasks.base import is_image

    return is_image(tuple(shape))
