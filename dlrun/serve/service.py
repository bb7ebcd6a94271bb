"""What one `dlrun serve` process holds: its settings, its model versions and metrics, the runs it loads at start,
and the counts it reports when it stops."""
from __future__ import annotations

import asyncio
import gc
from dataclasses import dataclass
from pathlib import Path

from dlrun.errors import DlrunError
from dlrun.serve.metrics import ServeMetrics
from dlrun.serve.models import Models, ModelVersion, Settings, load


@dataclass
class RunSpec:
    """A run folder to serve, and the model name it is a version of (None: the model's own name, e.g. mlp)."""

    run: Path
    name: str | None = None


class Service:
    """The server's state, shared by its routes (dlrun/serve/app.py) and its process (dlrun/serve/server.py)."""

    def __init__(self, settings: Settings, runs: list[RunSpec], say=print):
        self.settings, self.runs, self.say = settings, runs, say
        self.models = Models()
        self.metrics = ServeMetrics(self.models.versions)
        self.failure: DlrunError | None = None
        self.accepted = self.answered = 0  # prediction requests: taken in, and answered (any status)
        self.stop = lambda: None  # set by the server: begin a graceful shutdown
        self._loader: asyncio.Task | None = None
        self._load_lock: asyncio.Lock | None = None

    @property
    def ready(self) -> bool:
        return self._loader is not None and self._loader.done() and self.failure is None

    async def start(self) -> None:
        """Load the runs given on the command line in the background (GET /health: 503 until all are loaded)."""
        self._load_lock = asyncio.Lock()
        self.models.loading = 1
        self._loader = asyncio.get_running_loop().create_task(self._load_all())

    async def _load_all(self) -> None:
        try:
            for spec in self.runs:
                try:
                    version = await self.add(spec.run, spec.name)
                except DlrunError as exc:  # a run that cannot be served stops the start, as `dlrun predict` would
                    self.failure = exc
                except Exception as exc:  # noqa: BLE001 - said in one line, like the others
                    self.failure = DlrunError(f"{spec.run} cannot be served: {one_line(exc)}")
                if self.failure is not None:
                    self.stop()
                    return
                self.say(f"loaded {version.name} version {version.number}: {version.run} "
                         f"({version.predictor.source.name}, epoch {version.predictor.epoch})")
            gc.collect()
            gc.freeze()  # torch's and the models' objects out of the collector's sight: no 100 ms full collections
            self.say("ready")
        finally:
            self.models.loading = 0

    async def add(self, run: Path, name: str | None = None, checkpoint: str | None = None) -> ModelVersion:
        """Load a run folder (in a thread: the server keeps answering) as the next version of its model name."""
        settings = self.settings if checkpoint is None else _with(self.settings, checkpoint=checkpoint)
        async with self._load_lock:  # one at a time, so versions count in the order they were asked for
            predictor, summary = await asyncio.to_thread(load, run, settings)
            name = name or predictor.meta["model"]["name"]
            return self.models.add(name, run, predictor, summary, self.metrics, self.settings)

    async def close(self) -> None:
        """After the last connection closed: stop loading, answer whatever is queued, stop the workers."""
        if self._loader is not None and not self._loader.done():
            self._loader.cancel()
            await asyncio.gather(self._loader, return_exceptions=True)
        await self.models.close()
        if self.failure is None:
            self.say(f"stopped: {self.accepted} prediction request(s) accepted, {self.answered} answered")


def _with(settings: Settings, **changes) -> Settings:
    import dataclasses

    return dataclasses.replace(settings, **changes)


def one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:500]
