"""`tv`: any torchvision classification model by name, for transfer learning from a local weights file.

    dlrun model=tv model.arch=resnet18 model.weights=PATH model.freeze=backbone

dlrun never downloads weights: `model.weights` is a local file, either a torchvision/PyTorch
state_dict (e.g. resnet18-f37072fd.pth copied onto this machine) or a dlrun checkpoint
(`RUN_DIR/checkpoints/best.pt` of an earlier `model=tv` run). The classification head is always
replaced by a new one for the dataset's classes; `model.freeze` fixes the backbone, or its
first N layers with weights. Frozen normalisation layers also keep their running statistics
(they stay in eval mode while training), so a frozen part is bit-for-bit unchanged.
`param_groups(lr)` gives the head and the backbone their own learning rates.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from dlrun.train.checkpoint import safe_load
from dlrun.errors import DlrunError, did_you_mean
from dlrun.models.base import Model
from dlrun.registry import register_model

NEEDS_NO_AUX = {"googlenet", "inception_v3"}  # their auxiliary heads would change the output in training


def classification_archs() -> list[str]:
    from torchvision import models

    return sorted(models.list_models(module=models))


def _find_head(net: nn.Module) -> tuple[str, nn.Module]:
    """The classifier layer: the last Linear registered (fc, classifier[-1], heads.head, ...), else the last Conv2d."""
    named = list(net.named_modules())
    for kinds in ((nn.Linear,), (nn.Conv2d,)):  # squeezenet classifies with a 1x1 conv
        found = [(n, m) for n, m in named if isinstance(m, kinds)]
        if found:
            return found[-1]
    raise DlrunError("found no Linear or Conv2d classifier layer to replace")


def _new_head(old: nn.Module, num_outputs: int) -> nn.Module:
    if isinstance(old, nn.Linear):
        return nn.Linear(old.in_features, num_outputs)
    return nn.Conv2d(old.in_channels, num_outputs, old.kernel_size, old.stride, old.padding)


def _set_module(root: nn.Module, dotted: str, module: nn.Module) -> None:
    parent_name, _, leaf = dotted.rpartition(".")
    setattr(root.get_submodule(parent_name) if parent_name else root, leaf, module)


def read_weights(path: str) -> dict[str, torch.Tensor]:
    """A state_dict from a local file: a plain state_dict or a dlrun checkpoint (its 'model' entry)."""
    file = Path(os.path.expanduser(str(path)))
    if not file.is_file():
        raise DlrunError(f"model.weights={path}: no such file. dlrun never downloads weights (this machine has no "
                         "network access for it); give a local file: a torchvision state_dict (.pth) copied here, or "
                         "a dlrun run's checkpoints/best.pt. Leave model.weights=null to start from random weights.",
                         exit_code=3)
    state = safe_load(file, f"model.weights={path}", exit_code=3)
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]  # a dlrun checkpoint
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DlrunError(f"model.weights={path} holds no state_dict (a mapping of names to tensors)", exit_code=3)
    return state


@register_model("tv")
class TorchvisionModel(Model):
    """Any torchvision classifier by name (model.arch), local weights, new head, freezing, head/backbone lrs."""

    def __init__(self, input_shape: Sequence[int], num_outputs: int, arch: str = "resnet18", weights: str | None = None,
                 freeze="none", resize: int | None = None, head_lr: float | None = None,
                 backbone_lr: float | None = None):
        super().__init__()
        from torchvision import models

        if len(input_shape) != 3:
            raise DlrunError(f"model=tv needs image inputs (channels, height, width), got shape {tuple(input_shape)}")
        archs = classification_archs()
        if arch not in archs:
            raise DlrunError(f"unknown torchvision classification model model.arch={arch!r}."
                             f"{did_you_mean(str(arch), archs)}\nAvailable: {', '.join(archs)}")
        kwargs = {"aux_logits": False, "init_weights": True} if arch in NEEDS_NO_AUX else {}
        self.arch, self.resize = arch, resize
        self.head_lr, self.backbone_lr = head_lr, backbone_lr
        self.net = models.get_model(arch, weights=None, **kwargs)  # never a download
        # torchvision's nets take 3 channels: grey images are repeated, other counts pass a trainable 1x1 conv.
        channels = int(input_shape[0])
        self.adapter = nn.Identity() if channels == 3 else (
            _Repeat3() if channels == 1 else nn.Conv2d(channels, 3, 1))
        self.head_name, old_head = _find_head(self.net)
        if weights:
            self._load(weights, old_head)
        _set_module(self.net, self.head_name, _new_head(old_head, num_outputs))
        self.frozen: list[str] = self._freeze(freeze)
        try:
            with torch.no_grad():
                self.eval()(torch.zeros(1, *input_shape))
        except Exception as exc:  # noqa: BLE001
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DlrunError(f"torchvision's {arch} cannot take {tuple(input_shape)} images"
                             f"{f' resized to {resize}' if resize else ''}: {msg}. "
                             "Set model.resize=N (e.g. 32, 75 for inception_v3, 224) to resize the inputs.") from None
        self.train()

    # ---- weights -------------------------------------------------------------------------------
    def _load(self, path: str, old_head: nn.Module) -> None:
        state = read_weights(path)
        if any(k.startswith("net.") for k in state):  # a dlrun model=tv checkpoint: this wrapper's keys
            adapter = {k[len("adapter."):]: v for k, v in state.items() if k.startswith("adapter.")}
            state = {k[len("net."):]: v for k, v in state.items() if k.startswith("net.")}
            if adapter and list(self.adapter.state_dict()) == list(adapter):
                self.adapter.load_state_dict(adapter)
        head = self.head_name + "."
        body = {k: v for k, v in state.items() if not k.startswith(head)}  # the old head is replaced anyway
        own = {k: v for k, v in self.net.state_dict().items() if not k.startswith(head)}
        missing, unexpected = sorted(set(own) - set(body)), sorted(set(body) - set(own))
        wrong = [f"{k}: file {tuple(body[k].shape)} vs model {tuple(own[k].shape)}"
                 for k in own if k in body and body[k].shape != own[k].shape]
        if missing or unexpected or wrong:
            show = lambda xs: ", ".join(xs[:5]) + (f" ... ({len(xs)} in all)" if len(xs) > 5 else "")  # noqa: E731
            raise DlrunError(f"model.weights={path} does not fit torchvision's {self.arch}"
                             + (f"; missing: {show(missing)}" if missing else "")
                             + (f"; unexpected: {show(unexpected)}" if unexpected else "")
                             + (f"; wrong shapes: {show(wrong)}" if wrong else ""), exit_code=3)
        self.net.load_state_dict({**body, **{k: v for k, v in self.net.state_dict().items() if k.startswith(head)}})

    # ---- freezing ------------------------------------------------------------------------------
    def _is_head(self, name: str) -> bool:
        return name == self.head_name or name.startswith(self.head_name + ".")

    def _freeze(self, freeze) -> list[str]:
        """Set requires_grad=False on the backbone ('backbone'), nothing ('none') or the first N weight layers."""
        layers = [n for n, m in self.net.named_modules()
                  if not self._is_head(n) and any(True for _ in m.parameters(recurse=False))]
        if freeze in (None, "none", 0, False):
            chosen: list[str] = []
        elif freeze == "backbone":
            chosen = layers
        else:
            try:
                n = int(freeze)
            except (TypeError, ValueError):
                n = -1
            if isinstance(freeze, bool) or n < 0 or n > len(layers):
                raise DlrunError(f"model.freeze={freeze!r} is not allowed: backbone, none, or a number of first layers "
                                 f"with weights to freeze, 0..{len(layers)} for {self.arch} (head excluded)")
            chosen = layers[:n]
        for name in chosen:
            for p in self.net.get_submodule(name).parameters(recurse=False):
                p.requires_grad_(False)
        return chosen

    def train(self, mode: bool = True):
        super().train(mode)
        for name in self.frozen:  # frozen norm layers keep their running statistics
            module = self.net.get_submodule(name)
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
        return self

    def param_groups(self, lr: float | None) -> list[dict]:
        """Optimizer groups: the head (new layer and channel adapter), then the trainable backbone."""
        groups = []
        for name, rate, params in (
                ("head", self.head_lr, [p for n, p in self.named_parameters()
                                        if p.requires_grad and (n.startswith("adapter.") or self._is_head(n[4:]))]),
                ("backbone", self.backbone_lr, [p for n, p in self.named_parameters()
                                                if p.requires_grad and n.startswith("net.") and not self._is_head(n[4:])])):
            if params:
                group = {"params": params, "name": name}
                if rate is not None or lr is not None:
                    group["lr"] = rate if rate is not None else lr
                groups.append(group)
        if not groups:
            raise DlrunError("model=tv has no trainable parameters left (everything is frozen)")
        return groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.adapter(x)
        if self.resize:
            x = F.interpolate(x, size=(int(self.resize), int(self.resize)), mode="bilinear", align_corners=False)
        return self.net(x)


class _Repeat3(nn.Module):
    """Grey -> RGB by repeating the channel, so pretrained first convolutions apply unchanged."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.expand(-1, 3, -1, -1)
