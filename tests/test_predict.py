"""`dlrun predict` and `dlrun.load(RUN).predict(...)`: the test split reproduces summary.json for every task
family; a run folder moved to a machine without its data still predicts from image files and CSV rows; bad
input is one line, exit 2, and the run folder is left as it was."""
import json
import os
import shutil

import numpy as np
import pytest
import torch

import dlrun
from conftest import assert_clean_error, read_json, run_command_inprocess, run_dlrun, train_runs

FAMILIES = {  # task -> a small run of it
    "multiclass": ["trainer.epochs=3"],
    "binary": ["dataset=synthetic", "trainer.epochs=3"],
    "multilabel": ["dataset=synthetic", "dataset.kind=multilabel", "dataset.n_features=6", "trainer.epochs=3"],
    "regression": ["dataset=synthetic", "dataset.kind=regression", "dataset.n_features=4", "trainer.epochs=3"],
    "reconstruction": ["model=autoencoder", "trainer.epochs=2"],
    "next_token": ["model=charlm", "dataset=text", "dataset.length=16", "model.hidden=32", "trainer.epochs=1",
                   "trainer.limit_batches=20"],
    "generation": ["experiment=gan_digits", "trainer.epochs=2"],
    "word2vec": ["model=word2vec", "dataset=skipgram", "model.dim=8", "trainer.epochs=1", "trainer.batch_size=512"],
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return train_runs(tmp_path_factory.mktemp("families"), FAMILIES)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_predicting_the_test_split_reproduces_the_summary(runs, family):
    run = runs[family]
    summary = read_json(run / "summary.json")
    metrics, outputs, _ = dlrun.load(run).evaluate_split("test")
    for key, value in metrics.items():
        assert summary[f"test_{key}"] == value, key  # exactly: the same weights, preprocessing and code
    assert summary["task"] == ("binary" if family == "word2vec" else family)


def test_the_cli_prints_the_test_metrics_and_writes_predictions(runs, tmp_path):
    run = runs["multiclass"]
    summary = read_json(run / "summary.json")
    proc = run_dlrun("predict", str(run), "--split", "test", "--out", str(tmp_path / "p.jsonl"))
    assert proc.returncode == 0, proc.stderr
    assert f"test_accuracy: {summary['test_accuracy']:.6g}" in proc.stdout
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert len(rows) == summary["n_test"]
    assert {"class", "index", "probability", "top"} <= set(rows[0])
    assert sum(r["probability"] >= r["top"][-1]["probability"] for r in rows) == len(rows)


@pytest.fixture(scope="module")
def moved(runs, tmp_path_factory):
    """The digits run copied into an empty folder; inputs written as files from the real test digits."""
    where = tmp_path_factory.mktemp("elsewhere")
    run = where / "run"
    shutil.copytree(runs["multiclass"], run)
    from PIL import Image

    from dlrun.data import build_dataset
    from dlrun.config import compose

    data = build_dataset(compose(["logger=quiet"]).dataset)
    x, y = data.test.x[:12], data.test.y[:12]
    images = where / "images"
    images.mkdir()
    for i, img in enumerate(x):  # digits store 0..16; an image file holds 0..255
        Image.fromarray((img[0].numpy().astype(np.float32) * 255 / 16).round().astype(np.uint8)).save(images / f"{i:02d}.png")
    np.savetxt(where / "rows.csv", x.reshape(12, -1).numpy(), delimiter=",", fmt="%d",
               header=",".join(f"p{i}" for i in range(64)), comments="")
    np.save(where / "batch.npy", x.numpy())
    return where, run, x, y


def test_a_moved_run_predicts_images_csv_rows_and_arrays_without_its_data(moved):
    where, run, x, y = moved
    env = {"DLRUN_DATA": str(where / "nowhere"), "HOME": str(where / "nohome")}
    expected = dlrun.load(run).predict(x)
    assert sum(p["index"] == int(t) for p, t in zip(expected, y)) >= 10  # it has learned
    for inputs in ([str(where / "images")], [str(where / "rows.csv")], [str(where / "batch.npy")]):
        out = where / f"pred_{len(os.listdir(where))}.csv"
        proc = run_dlrun("predict", str(run), *inputs, "--out", str(out), env=env, cwd=where)
        assert proc.returncode == 0, proc.stderr
        import csv

        with open(out) as f:
            got = list(csv.DictReader(f))
        assert [int(r["index"]) for r in got] == [p["index"] for p in expected], inputs
        tolerance = 2e-3 if inputs[0].endswith("images") else 1e-6  # a PNG holds 0..255, digits 0..16: rounding
        assert [float(r["probability"]) for r in got] == pytest.approx([p["probability"] for p in expected], abs=tolerance)
    table = run_dlrun("predict", str(run), str(where / "images" / "00.png"), env=env, cwd=where)
    assert table.returncode == 0 and f"{expected[0]['class']} (" in table.stdout, table.stdout + table.stderr


def test_bad_input_is_one_line_and_changes_nothing(moved, tmp_path, capsys):
    where, run, x, _ = moved
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    (tmp_path / "empty").mkdir()
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    np.save(tmp_path / "shape.npy", np.zeros((3, 1, 9, 9), dtype=np.uint8))
    np.save(tmp_path / "nan.npy", np.full((2, 1, 8, 8), np.nan, dtype=np.float32))
    np.save(tmp_path / "text.npy", np.array([["a"] * 8] * 8)[None, None])
    (tmp_path / "rows.csv").write_text("1,2,3\n")
    cases = [([str(tmp_path / "empty")], "holds no image files"),
             ([str(tmp_path / "broken.png")], "cannot be read as an image"),
             ([str(tmp_path / "shape.npy")], "this model takes inputs of shape (1, 8, 8)"),
             ([str(tmp_path / "nan.npy")], "NaN"),
             ([str(tmp_path / "text.npy")], "give numbers"),
             ([str(tmp_path / "rows.csv")], "row 1: 3 values; this model takes 64 per input"),
             ([str(tmp_path / "missing.png")], "no such file or folder"),
             ([str(tmp_path / "rows.csv"), "--out", str(tmp_path / "x.txt")], "the suffix says the format")]
    from dlrun.cli.predict import predict_command

    assert_clean_error(run_dlrun("predict", str(run), *cases[0][0]), 2, cases[0][1])  # the real CLI, once
    for args, message in cases[1:]:  # the rest in this process: the same code, without torch's start-up each time
        code, out = run_command_inprocess(predict_command, [str(run), *args], capsys)
        assert code == 2 and message in out, (args, out)
    unfinished = tmp_path / "unfinished"
    (unfinished / ".hydra").mkdir(parents=True)
    assert_clean_error(run_dlrun("predict", str(unfinished), str(where / "rows.csv")), 2,
                       "has no checkpoints/best.pt: it never completed an epoch")
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_text_models_continue_a_prompt_and_name_neighbours(runs):
    proc = run_dlrun("predict", str(runs["next_token"]), "--text", "This ", "--length", "20")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("This ") and len(proc.stdout.rstrip("\n")) == 25
    words = dlrun.load(runs["word2vec"]).vocab[:2]
    proc = run_dlrun("predict", str(runs["word2vec"]), "--text", " ".join(words))
    assert proc.returncode == 0, proc.stderr
    assert [line.split(":")[0] for line in proc.stdout.splitlines()] == words
    assert_clean_error(run_dlrun("predict", str(runs["next_token"]), "--text", "\u2603"), 2,
                       "characters the model never saw")


def test_outputs_of_image_models_go_to_png_and_npy(runs, tmp_path):
    run = runs["reconstruction"]
    for name in ("rebuilt.png", "rebuilt.npy"):
        proc = run_dlrun("predict", str(run), "--split", "test", "--out", str(tmp_path / name))
        assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "rebuilt.png").read_bytes()[:4] == b"\x89PNG"
    n_test = read_json(run / "summary.json")["n_test"]
    assert np.load(tmp_path / "rebuilt.npy").shape == (n_test, 1, 8, 8)  # one rebuilt digit per test input
    outputs = dlrun.load(run).outputs(torch.zeros(2, 1, 8, 8, dtype=torch.uint8))
    assert outputs.shape == (2, 1, 8, 8)
