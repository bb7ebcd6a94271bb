"""`dlrun predict RUN [INPUT ...] [--split test|val] [--text PROMPT] [--checkpoint best|last|PATH] [--out FILE]
[--batch-size N] [--top-k K] [--device D]`: a trained run's predictions on new inputs or on its own data."""
from __future__ import annotations

import argparse
from pathlib import Path

from dlrun.errors import DlrunError, report_error


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="dlrun predict", description="Predictions of a trained run (its checkpoint describes the model and how "
        "inputs are prepared: the dataset need not be on this machine). Inputs are raw, in the data's own units.")
    ap.add_argument("run", type=Path, help="the run folder")
    ap.add_argument("inputs", nargs="*", help=".npy/.npz arrays (N, *input shape), CSV rows (one input's values per "
                    "row), image files or folders of images (converted to the model's channels and size)")
    ap.add_argument("--split", choices=("test", "val", "train"), help="the run's own split instead of inputs: "
                    "prints its metrics (the test split's equal summary.json's)")
    ap.add_argument("--text", help="a prompt for a character model (the text it writes next), words for a word "
                    "embedding model (their nearest words), or a source text for a sequence-to-sequence model (its "
                    "translation; plain inputs are such texts too)")
    ap.add_argument("--checkpoint", default="best", help="best (default), last, or a checkpoint file")
    ap.add_argument("--out", type=Path, help="write the predictions to FILE: .csv, .jsonl, .npy (raw outputs) or "
                    ".png (image outputs); default: a table on the terminal. A segmentation model also writes each "
                    "input's mask beside FILE, as NAME_mask.png (class ids as pixel values), a detection model its boxes as NAME.txt "
                    "(YOLO's format with the score: class cx cy w h score)")
    ap.add_argument("--batch-size", type=int, default=None, help="inputs per forward pass (default: the run's)")
    ap.add_argument("--top-k", type=int, default=3, help="classes shown per input (classification)")
    ap.add_argument("--length", type=int, default=None, help="characters to write after a --text prompt")
    ap.add_argument("--beam", type=int, default=None, help="sequence to sequence: translate with beam search of K "
                    "beams (1: greedy; default: the run's model.beam)")
    ap.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or mps")
    return ap.parse_args(argv)


def predict_command(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        predict(args)
    except DlrunError as exc:
        return report_error(exc)
    return 0


def predict(args: argparse.Namespace) -> None:
    from rich.console import Console

    from dlrun.predict import outputs as out_files
    from dlrun.predict.predictor import Predictor
    from dlrun.predict.text import text_answer, translations
    from dlrun.tasks.base import is_image

    out_files.check_out(args.out)
    if args.batch_size is not None and args.batch_size < 1:
        raise DlrunError(f"--batch-size {args.batch_size}: give a positive number")
    if sum(bool(x) for x in (args.inputs, args.split, args.text)) != 1:
        raise DlrunError("give inputs (files or folders), --split test|val, or --text PROMPT: one of them.")
    console = Console()
    predictor = Predictor.load(args.run, args.checkpoint, args.device)
    where = f"{predictor.source} (epoch {predictor.epoch})"
    set_beam(predictor, args.beam)
    texts = source_texts(predictor, args)
    if texts and args.text is not None and args.out is None:
        _, preds, notes = translations(predictor, texts)
        console.print(preds[0]["translation"], highlight=False, markup=False, soft_wrap=True)
        for note in notes:
            console.print(note, highlight=False, markup=False, style="yellow")
        return
    if args.text is not None and not texts:
        console.print(text_answer(predictor, args.text, args.length), highlight=False, markup=False, soft_wrap=True)
        return
    if args.split:
        metrics, outputs, _ = predictor.evaluate_split(args.split, args.batch_size)
        console.print(f"{args.split} split of {args.run} with {where}:", highlight=False, markup=False)
        for key, value in metrics.items():
            console.print(f"  {args.split}_{key}: {value:.6g}", highlight=False, markup=False)
        names = [f"{args.split}[{i}]" for i in range(len(outputs))]
        preds = predictor.task.decode(outputs, predictor.classes, args.top_k)
    elif texts:
        outputs, preds, notes = translations(predictor, texts)
        names = texts
        for note in notes:
            console.print(note, highlight=False, markup=False, style="yellow")
    else:
        from dlrun.predict.inputs import read_inputs

        raw, names = read_inputs(args.inputs, predictor.meta)
        run_batch = predictor.settings.batch_size
        outputs = predictor.outputs(raw, args.batch_size or (len(raw) if run_batch == "full" else int(run_batch)))
        preds = predictor.task.decode(outputs, predictor.classes, args.top_k)
    if args.out is not None:
        image = predictor.input_shape if predictor.task.target_is_input and is_image(predictor.input_shape) else None
        out_files.write(args.out, names, preds, outputs, image)
        console.print(f"wrote {len(preds)} prediction(s) of {where} to {args.out}", highlight=False, markup=False)
        files = predictor.task.write_files(outputs, names, args.out.parent)  # a task's own files (masks) beside it
        if files:
            console.print(f"wrote {len(files)} file(s) to {args.out.parent} ({files[0].name}, ...)", highlight=False,
                          markup=False)
    elif not args.split:
        from rich.table import Table

        from dlrun.report.tables import print_table

        table = Table("input", "prediction", title=f"{args.run} ({where})", title_justify="left")
        for name, pred in zip(names, preds):
            table.add_row(name, out_files.short(pred))
        print_table(table, console)


def set_beam(predictor, beam: int | None) -> None:
    """--beam K: a sequence-to-sequence model translates with K beams."""
    if beam is None:
        return
    from dlrun.models.seq2seq import Seq2Seq

    if not isinstance(predictor.model, Seq2Seq):
        raise DlrunError("--beam is for sequence-to-sequence models (model=seq2seq).")
    if beam < 1:
        raise DlrunError(f"--beam {beam}: give 1 (greedy search) or more beams.")
    predictor.model.beam = beam


def source_texts(predictor, args: argparse.Namespace) -> list[str] | None:
    """The texts to translate, for a model trained on text pairs (its description says how text becomes tokens):
    --text, or plain inputs that are not files."""
    if not predictor.meta.get("text"):
        return None
    if args.text is not None:
        return [args.text]
    return list(args.inputs) if args.inputs and not all(Path(i).exists() for i in args.inputs) else None
