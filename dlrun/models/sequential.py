"""`sequential`: any stack of layers written in the config, the Keras Sequential API as YAML.

Each entry of `model.layers` is one layer, in one of three spellings:

    relu                                  a name alone
    conv2d:32:3                           name:positional:arguments (handy on the command line)
    {conv2d: {out: 32, kernel: 3, stride: 2, activation: relu}}   name: keyword arguments
    {maxpool2d: 2}  /  {reshape: [1, 28, 28]}                      name: one argument / a list of them

Input sizes are inferred by passing a dummy batch through the stack as it is built, so nobody
writes `in_features`; a layer that does not fit raises an error naming its index and the shapes.
`out: outputs` (or a final `linear` without `out`) means the dataset's number of outputs.
Shapes follow PyTorch: images (C, H, W), 1-D signals (C, L), sequences (T, F) for lstm/gru.
"""
from __future__ import annotations

import inspect
from collections import OrderedDict
from typing import Any, Callable, Sequence

import torch
import yaml
from torch import nn

from dlrun.errors import DlrunError, did_you_mean
from dlrun.models.layers import ACTIVATIONS
from dlrun.registry import register_model

Shape = tuple[int, ...]


# ---- small modules torch lacks ----------------------------------------------------------------------
class Reshape(nn.Module):
    def __init__(self, *shape: int):
        super().__init__()
        self.shape = tuple(int(s) for s in shape)

    def forward(self, x):
        return x.reshape(x.shape[0], *self.shape)

    def extra_repr(self):
        return f"shape={self.shape}"


class Permute(nn.Module):
    def __init__(self, *dims: int):
        super().__init__()
        self.dims = tuple(int(d) for d in dims)

    def forward(self, x):
        return x.permute(0, *(d + 1 for d in self.dims))

    def extra_repr(self):
        return f"dims={self.dims}"


class ChannelLayerNorm(nn.LayerNorm):
    """Keras' LayerNormalization() on images: normalise each pixel's channel vector (axis -1 of NHWC)."""

    def forward(self, x):
        return super().forward(x.movedim(1, -1)).movedim(-1, 1)


class Recurrent(nn.Module):
    """LSTM/GRU/RNN on (T, F) sequences, batch first; the last step's output unless return_sequences."""

    def __init__(self, cell: type[nn.RNNBase], input_size: int, hidden: int, layers: int = 1,
                 bidirectional: bool = False, return_sequences: bool = False, dropout: float = 0.0):
        super().__init__()
        self.rnn = cell(input_size, hidden, num_layers=layers, batch_first=True, bidirectional=bidirectional,
                        dropout=dropout)
        self.return_sequences = return_sequences

    def forward(self, x):
        out, _ = self.rnn(x)
        return out if self.return_sequences else out[:, -1]


class TokenEmbedding(nn.Embedding):
    """nn.Embedding that takes the float batches dlrun's data gives (token ids as numbers)."""

    def forward(self, x):
        return super().forward(x.long())


# ---- one builder per layer kind: (input shape, arguments) -> module ----------------------------------
def _rank(shape: Shape, allowed: Sequence[int], what: str) -> None:
    if len(shape) not in allowed:
        want = " or ".join({1: "(features,)", 2: "(channels, length) / (steps, features)",
                            3: "(channels, height, width)"}[r] for r in allowed)
        raise ValueError(f"{what} needs an input of shape {want}, got {shape}")


def _linear(shape, out, bias=True):
    return nn.Linear(shape[-1], out, bias=bias)


def _same(padding, kernel, stride):
    """'same' for strided convs (torch only allows it at stride 1): kernel // 2, as Keras does for odd kernels."""
    if padding == "same" and stride not in (1, [1], (1,), [1, 1], (1, 1)):
        return kernel // 2 if isinstance(kernel, int) else tuple(k // 2 for k in kernel)
    return padding


def _conv(dims: int):
    cls = nn.Conv1d if dims == 1 else nn.Conv2d

    def build(shape, out, kernel=3, stride=1, padding=0, dilation=1, groups=1, bias=True):
        _rank(shape, [dims + 1], f"conv{dims}d")
        return cls(shape[0], out, kernel, stride, _same(padding, kernel, stride), dilation, groups, bias)
    return build


def _conv_transpose(dims: int):
    cls = nn.ConvTranspose1d if dims == 1 else nn.ConvTranspose2d

    def build(shape, out, kernel=3, stride=1, padding=0, output_padding=0, bias=True):
        _rank(shape, [dims + 1], f"conv_transpose{dims}d")
        return cls(shape[0], out, kernel, stride, padding, output_padding, bias=bias)
    return build


def _pool(cls, dims: int):
    def build(shape, kernel=2, stride=None, padding=0):
        _rank(shape, [dims + 1], cls.__name__)
        return cls(kernel, stride, padding)
    return build


def _global_pool(kind: str):
    def build(shape):
        _rank(shape, [2, 3], f"global_{kind}pool")
        pool = {(2, "avg"): nn.AdaptiveAvgPool1d, (3, "avg"): nn.AdaptiveAvgPool2d,
                (2, "max"): nn.AdaptiveMaxPool1d, (3, "max"): nn.AdaptiveMaxPool2d}[len(shape), kind]
        return nn.Sequential(pool(1), nn.Flatten())
    return build


def _batchnorm(shape, eps=1e-5, momentum=0.1):
    _rank(shape, [1, 2, 3], "batchnorm")
    return (nn.BatchNorm2d if len(shape) == 3 else nn.BatchNorm1d)(shape[0], eps, momentum)


def _layernorm(shape, eps=1e-5):
    # Keras normalises the last axis: features, or the channels of each pixel of a channels-last image.
    return ChannelLayerNorm(shape[0], eps) if len(shape) == 3 else nn.LayerNorm(shape[-1], eps)


def _dropout(shape, p=0.5):
    return nn.Dropout(p)


def _dropout2d(shape, p=0.5):
    _rank(shape, [3], "dropout2d")
    return nn.Dropout2d(p)


def _flatten(shape):
    return nn.Flatten()


def _reshape(shape, *target):
    if len(target) == 1 and isinstance(target[0], (list, tuple)):
        target = tuple(target[0])
    if not target:
        raise ValueError("reshape needs the target shape without the batch dimension, e.g. reshape:1:28:28")
    return Reshape(*target)


def _permute(shape, *dims):
    if len(dims) == 1 and isinstance(dims[0], (list, tuple)):
        dims = tuple(dims[0])
    if sorted(dims) != list(range(len(shape))):
        raise ValueError(f"permute needs a permutation of 0..{len(shape) - 1} (batch excluded), got {list(dims)}")
    return Permute(*dims)


def _embedding(shape, num, dim, padding_idx=None):
    _rank(shape, [1], "embedding (token ids)")
    return TokenEmbedding(num, dim, padding_idx=padding_idx)


def _recurrent(cell):
    def build(shape, hidden, layers=1, bidirectional=False, return_sequences=False, dropout=0.0):
        _rank(shape, [2], cell.__name__.lower())
        return Recurrent(cell, shape[-1], hidden, layers, bidirectional, return_sequences, dropout)
    return build


def _upsample(shape, scale=2, mode="nearest", size=None):
    _rank(shape, [2, 3], "upsample")
    return nn.Upsample(size=size, scale_factor=None if size else scale, mode=mode)


def _activation(cls):
    def build(shape, *args, **kwargs):
        return cls(*args, **kwargs)
    build.__name__ = cls.__name__
    return build


def _softmax(cls):
    def build(shape, dim=None):
        # the class/feature axis: channels of an image (dim 1 of the batch), else the last axis
        return cls(dim=dim if dim is not None else (1 if len(shape) == 3 else -1))
    return build


LAYERS: dict[str, Callable[..., nn.Module]] = {
    "linear": _linear, "conv1d": _conv(1), "conv2d": _conv(2),
    "conv_transpose1d": _conv_transpose(1), "conv_transpose2d": _conv_transpose(2),
    "maxpool1d": _pool(nn.MaxPool1d, 1), "maxpool2d": _pool(nn.MaxPool2d, 2),
    "avgpool1d": _pool(nn.AvgPool1d, 1), "avgpool2d": _pool(nn.AvgPool2d, 2),
    "global_avgpool": _global_pool("avg"), "global_maxpool": _global_pool("max"),
    "flatten": _flatten, "reshape": _reshape, "permute": _permute,
    "dropout": _dropout, "dropout2d": _dropout2d, "batchnorm": _batchnorm, "layernorm": _layernorm,
    "embedding": _embedding, "lstm": _recurrent(nn.LSTM), "gru": _recurrent(nn.GRU), "rnn": _recurrent(nn.RNN),
    "upsample": _upsample, "softmax": _softmax(nn.Softmax), "log_softmax": _softmax(nn.LogSoftmax),
    "identity": _activation(nn.Identity),
    # every activation by name; 'linear' is the dense layer here (use 'identity' for no activation)
    **{name: _activation(cls) for name, cls in ACTIVATIONS.items() if name != "linear"},
}
# Keras' and torch's spellings of the same layers (names are compared without '_' and case).
ALIASES = {"dense": "linear", "conv2dtranspose": "conv_transpose2d", "conv1dtranspose": "conv_transpose1d",
           "deconv2d": "conv_transpose2d", "deconv1d": "conv_transpose1d", "maxpooling2d": "maxpool2d",
           "maxpooling1d": "maxpool1d", "averagepooling2d": "avgpool2d", "averagepooling1d": "avgpool1d",
           "globalaveragepooling2d": "global_avgpool", "globalaveragepooling1d": "global_avgpool",
           "globalmaxpooling2d": "global_maxpool", "globalmaxpooling1d": "global_maxpool",
           "batchnormalization": "batchnorm", "batchnorm1d": "batchnorm", "batchnorm2d": "batchnorm",
           "layernormalization": "layernorm", "upsampling2d": "upsample", "upsampling1d": "upsample",
           "spatialdropout2d": "dropout2d", "leakyrelu": "leaky_relu"}
_KEYS = {**{k.replace("_", ""): k for k in LAYERS}, **ALIASES}


def _scalar(text: str) -> Any:
    """'32' -> 32, '0.5' -> 0.5, 'true' -> True, 'same' -> 'same' (YAML's rules)."""
    value = yaml.safe_load(text) if text.strip() else None
    if isinstance(value, str):
        try:
            return float(value)  # YAML 1.1 reads '1e-3' as a string
        except ValueError:
            return value
    return value if isinstance(value, (int, float, bool)) or value is None else text


def parse_layer(entry: Any, index: int, where: str = "model.layers") -> tuple[str, list, dict]:
    """One entry of model.layers (`where`, for messages) -> (canonical kind, positional args, keyword args)."""
    if isinstance(entry, str):
        name, *rest = entry.split(":")
        args, kwargs = [_scalar(a) for a in rest], {}
    elif isinstance(entry, dict) and len(entry) == 1:
        name, value = next(iter(entry.items()))
        args, kwargs = [], {}
        if isinstance(value, dict):
            kwargs = dict(value)
        elif isinstance(value, (list, tuple)):
            args = list(value)
        elif value is not None:
            args = [value]
    else:
        raise DlrunError(f"{where}[{index}]={entry!r}: write a layer as a name ('relu'), name:args "
                         "('conv2d:32:3') or a one-key mapping ({conv2d: {out: 32, kernel: 3}})")
    key = str(name).strip().lower().replace("_", "")
    if key not in _KEYS:
        names = sorted(LAYERS)
        raise DlrunError(f"{where}[{index}]: unknown layer '{name}'.{did_you_mean(str(name).lower(), names)}\n"
                         f"Layers: {', '.join(names)}")
    return _KEYS[key], args, kwargs


def _tuples(value):
    return tuple(value) if isinstance(value, list) else value


def build_layer(kind: str, shape: Shape, args: list, kwargs: dict, num_outputs: int, index: int,
                last: bool, where: str = "model.layers") -> list[nn.Module]:
    """Build one layer (and the activation its `activation:` key asks for) for inputs of `shape`."""
    fn = LAYERS[kind]
    kwargs = dict(kwargs)
    act = kwargs.pop("activation", None)
    args = [num_outputs if a == "outputs" else _tuples(a) for a in args]
    kwargs = {k: num_outputs if v == "outputs" else _tuples(v) for k, v in kwargs.items()}
    if kind == "linear" and not args and "out" not in kwargs:
        if not last:
            raise DlrunError(f"{where}[{index}] (linear) needs its width: linear:N or {{linear: {{out: N}}}} "
                             "(only the last layer may leave it out: it then gives the dataset's outputs)")
        args = [num_outputs]
    params = list(inspect.signature(fn).parameters)[1:]
    try:
        inspect.signature(fn).bind(shape, *args, **kwargs)
        layers = [fn(shape, *args, **kwargs)]
    except TypeError as exc:
        raise DlrunError(f"{where}[{index}] ({kind}): bad arguments {args or ''}{kwargs or ''}: {exc}. "
                         f"{kind} takes: {', '.join(params) or 'no arguments'}") from None
    except ValueError as exc:  # rank checks and torch's own argument checks
        raise DlrunError(f"{where}[{index}] ({kind}) does not fit its input of shape {shape}: {exc}") from None
    if act is not None:
        if act not in ACTIVATIONS:
            raise DlrunError(f"{where}[{index}] ({kind}): unknown activation '{act}'."
                             f"{did_you_mean(str(act), ACTIVATIONS)}")
        layers.append(ACTIVATIONS[act]())
    return layers


def build_stack(layers: Sequence, shape: Shape, num_outputs: int, where: str = "model.layers",
                source: str = "the input", open_end: bool = True) -> tuple[OrderedDict[str, nn.Module], Shape]:
    """The modules of a layer list for inputs of `shape`, each size inferred from a probe batch, and the output
    shape. Messages name `where[i]`; `source` is what feeds the first layer; `open_end`: a last bare `linear`
    gives `num_outputs`."""
    modules: OrderedDict[str, nn.Module] = OrderedDict()
    probe = torch.zeros(2, *shape)
    for i, entry in enumerate(layers):
        kind, args, kwargs = parse_layer(entry, i, where)
        built = build_layer(kind, shape, args, kwargs, num_outputs, i, open_end and i == len(layers) - 1, where)
        for j, module in enumerate(built):
            module.eval()
            try:
                with torch.no_grad():
                    out = module(probe)
            except Exception as exc:  # noqa: BLE001 - torch raises RuntimeError, ValueError, IndexError...
                msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise DlrunError(f"{where}[{i}] ({kind}) does not fit its input of shape {shape} "
                                 f"(the output of {source if i == 0 else f'{where}[{i - 1}]'}): {msg}") from None
            if not isinstance(out, torch.Tensor):
                raise DlrunError(f"{where}[{i}] ({kind}) does not return one tensor")
            modules[str(i) if j == 0 else f"{i}_{type(module).__name__.lower()}"] = module.train()
            probe, shape = out, tuple(out.shape[1:])
    return modules, shape


@register_model("sequential")
def sequential(input_shape: Sequence[int], num_outputs: int, layers: Sequence = ("flatten", "linear")) -> nn.Module:
    """Any layer stack written in the config (Keras Sequential as YAML); input sizes are inferred."""
    if not layers:
        raise DlrunError("model.layers is empty: list the layers, e.g. [flatten, linear:128, relu, linear]")
    modules, shape = build_stack(layers, tuple(int(s) for s in input_shape), num_outputs)
    if shape != (num_outputs,):
        raise DlrunError(f"the last layer gives outputs of shape {shape} but the dataset needs ({num_outputs},): "
                         f"end the stack with flatten (if needed) and a linear layer (`linear` alone gives {num_outputs})")
    return nn.Sequential(modules)
