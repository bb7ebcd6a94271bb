"""`dlrun export RUN --format onnx|torchscript|pt2|safetensors [--out FILE] [--checkpoint best|last|PATH]`."""
from __future__ import annotations

import argparse
from pathlib import Path

from dlrun.errors import DlrunError, report_error

FORMATS = ("onnx", "torchscript", "pt2", "safetensors")


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="dlrun export", description="A trained run's model as a file other programs load. The graph takes raw "
        "inputs as the data source gives them (uint8 pixels, token ids) and holds the normalisation; the batch size is "
        "free; class names, task, input spec and dlrun's version go in its metadata.")
    ap.add_argument("run", type=Path, help="the run folder")
    ap.add_argument("--format", required=True, choices=FORMATS, help="onnx (checked with onnxruntime), torchscript, "
                    "pt2 (torch.export) or safetensors (weights and metadata)")
    ap.add_argument("--out", type=Path, help="the file to write (default: RUN/model.FORMAT'S_SUFFIX)")
    ap.add_argument("--checkpoint", default="best", help="best (default), last, or a checkpoint file")
    return ap.parse_args(argv)


def export_command(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        from dlrun.predict.export import FORMATS as SUFFIXES
        from dlrun.predict.export import export
        from dlrun.predict.predictor import Predictor

        predictor = Predictor.load(args.run, args.checkpoint)
        out = args.out or args.run / f"model{SUFFIXES[args.format]}"
        if out.exists() and args.out is None:
            raise DlrunError(f"{out} exists; nothing was changed. Choose another file with --out FILE.")
        export(predictor, args.format, out)
    except DlrunError as exc:
        return report_error(exc)
    print(f"wrote {out} ({args.format}, from {predictor.source}, epoch {predictor.epoch})")
    return 0
