"""A trained run as a predictor: `dlrun.load(RUN).predict(inputs)`, `dlrun predict`, `dlrun export`, `dlrun serve`.

Everything comes from the checkpoint, which describes itself (dlrun/train/build.py `describe`): the model's
config and the shapes it was built for, the task, and how raw inputs are prepared. So a run folder copied to a
machine without its dataset still predicts. New inputs go through the same `Normalise` module as training did,
and the run's own splits through the same evaluation code as its test pass, so their numbers are the same.
"""
from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path

import torch
from torch import nn

from dlrun.config.schema import Trainer as TrainerSettings
from dlrun.config.schema import settings
from dlrun.data.normalise import Normalise
from dlrun.errors import DlrunError
from dlrun.models.build import build_model
from dlrun.tasks.base import Task, build_task
from dlrun.train.checkpoint import load_checkpoint
from dlrun.train.loop import AMP_DTYPES

BUILD_TIME_FILES = ("weights",)  # model keys naming files read when a model is first built (tv): not when rebuilt


class Predictor:
    """A trained model with its preprocessing and task, from a run folder's checkpoint."""

    def __init__(self, model: nn.Module, task: Task, meta: dict, config: dict, source: Path, epoch: int | None,
                 device: torch.device):
        self.model, self.task, self.meta, self.config = model.eval(), task, meta, config
        self.source, self.epoch, self.device = source, epoch, device
        self.normalise = Normalise.from_description(meta).to(device)
        self.input_shape = tuple(meta["input_shape"])
        self.input_dtype = getattr(torch, meta["input_dtype"])
        self.classes, self.vocab = meta.get("classes"), meta.get("vocab")
        self.settings = settings(TrainerSettings, config["trainer"])
        self.amp_dtype = AMP_DTYPES[str(self.settings.precision)]  # the precision the run was tested in

    # ---- building ------------------------------------------------------------------------------
    @classmethod
    def load(cls, run: str | Path, checkpoint: str = "best", device: str | torch.device = "cpu") -> "Predictor":
        """The predictor of a run folder: `checkpoint` is best, last or a checkpoint file's path."""
        source = checkpoint_path(Path(run), checkpoint)
        device = torch.device(device)
        state = load_checkpoint(source, map_location=device)
        meta, config = state.get("meta"), state.get("config")
        if not meta or not config:
            raise DlrunError(f"{source} holds no description of its model and inputs (it was written by dlrun 0.1.0 or "
                             "earlier): train the run again to predict with it.")
        if "env" in meta:  # an agent acts in its environment: it has no inputs to predict from
            raise DlrunError(f"{run} is an agent trained in an environment (env={meta['env'].get('id', '?')}): "
                             "run its greedy policy with `dlrun play RUN --episodes N`.")
        model_cfg = {k: v for k, v in meta["model"].items() if k not in BUILD_TIME_FILES}
        model = build_model(model_cfg, tuple(meta["input_shape"]), meta["num_outputs"], meta["dataset"]["name"],
                            meta["tokens"], meta.get("vocab"), meta.get("features"),
                            {h["name"]: h["width"] for h in meta.get("heads") or []} or None).to(device)
        try:
            model.load_state_dict(state["model"])
        except RuntimeError as exc:
            raise DlrunError(f"{source}: its weights do not fit its own model config ({str(exc).splitlines()[0]})") from None
        task = build_task(meta["task"], {**config.get("loss", {}), "name": meta["loss"]}, meta["num_outputs"],
                          meta, meta.get("class_weight"))
        task.loss_fn.to(device)
        return cls(model, task, meta, config, source, state.get("epoch"), device)

    # ---- new inputs ----------------------------------------------------------------------------
    @torch.no_grad()
    def outputs(self, raw: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """The model's raw outputs (scores, values) for a batch of raw inputs, computed in batches."""
        raw = self.check(raw)
        parts = []
        for start in range(0, len(raw), batch_size):
            x = self.normalise(raw[start:start + batch_size].to(self.device))
            with torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp_dtype else contextlib.nullcontext():
                parts.append(self.model(x).float().cpu())
        return torch.cat(parts) if parts else torch.empty(0)

    def predict(self, inputs, batch_size: int = 256, top_k: int = 3) -> list[dict]:
        """One decoded prediction per input (class names and probabilities, labels, values, ...). `inputs`: raw
        inputs (a tensor or array, in the data's own units) or a list of file and folder paths."""
        if isinstance(inputs, (str, Path)) or (isinstance(inputs, (list, tuple)) and inputs
                                                and isinstance(inputs[0], (str, Path))):
            from dlrun.predict.inputs import read_inputs

            inputs, _ = read_inputs([inputs] if isinstance(inputs, (str, Path)) else list(inputs), self.meta)
        return self.task.decode(self.outputs(inputs, batch_size), self.classes, top_k)

    def check(self, raw: torch.Tensor) -> torch.Tensor:
        """A batch of raw inputs of the model's shape and a fitting dtype, or a DlrunError saying what was expected."""
        raw = torch.as_tensor(raw)
        if tuple(raw.shape[1:]) != self.input_shape:
            raise DlrunError(f"inputs of shape {tuple(raw.shape[1:])} (after the batch dimension); this model takes "
                             f"{self.input_shape}, as {self.meta['dataset']['name']} gives them.")
        if self.meta["tokens"]:
            if raw.is_floating_point() or raw.is_complex():
                raise DlrunError(f"token ids must be integers; got {raw.dtype}.")
            known = max(len(self.classes or []), len(self.vocab or []))  # seq2seq: source and target vocabularies
            if len(raw) and (raw.min() < 0 or raw.max() >= known):
                raise DlrunError("a token id is outside the model's vocabulary.")
            return raw.long()
        if raw.is_floating_point() and not torch.isfinite(raw).all():
            raise DlrunError("the inputs hold NaN or infinite values.")
        if raw.dtype == torch.bool or raw.is_complex():
            raise DlrunError(f"inputs of dtype {raw.dtype}; give numbers in the data's units ({self.input_dtype}).")
        return raw

    # ---- the run's own data --------------------------------------------------------------------
    def evaluate_split(self, name: str = "test", batch_size: int | None = None) -> tuple[dict, torch.Tensor, torch.Tensor]:
        """The run's own split, rebuilt from its dataset config (the data must be on this machine) and scored by the
        same code as the test pass: (metrics as in summary.json without the test_ prefix, outputs, targets)."""
        from omegaconf import OmegaConf

        from dlrun.data.loader import Batches
        from dlrun.train.build import build_data
        from dlrun.train.loop import SupervisedLoop

        config = OmegaConf.create(self.config)
        if "download" in config.dataset:
            config.dataset.download = False  # predicting never downloads
        data, _, _ = build_data(config, self.device)  # as the run built it, targets shaped for its task
        split = {"test": data.test, "val": data.val, "train": data.train}[name]
        tset = dataclasses.replace(self.settings, batch_size=batch_size or self.settings.batch_size)
        loop = SupervisedLoop(self.model, None, self.task, data, Batches(self.device, tset.batch_size,
                                                                          limit_batches=tset.limit_batches), tset)
        metrics, _, pairs = loop.score(split, self.config["seed"])  # the test pass's own code
        return metrics, torch.cat([o for o, _ in pairs]).cpu(), torch.cat([t for _, t in pairs]).cpu()


def checkpoint_path(run: Path, checkpoint: str) -> Path:
    """RUN/checkpoints/best.pt, last.pt, or a given file; a folder that holds no run is a clear error."""
    if checkpoint in ("best", "last"):
        path = run / "checkpoints" / f"{checkpoint}.pt"
        if not run.is_dir():
            raise DlrunError(f"no such run folder: {run}")
        if not path.exists():
            summary = run / "summary.json"
            why = "it never completed an epoch" if summary.exists() or (run / ".hydra").exists() else "it holds no dlrun run"
            raise DlrunError(f"{run} has no checkpoints/{checkpoint}.pt: {why}.")
        return path
    path = Path(checkpoint)
    if not path.is_file():
        raise DlrunError(f"--checkpoint {checkpoint}: no such file (give best, last or a checkpoint's path)")
    return path
