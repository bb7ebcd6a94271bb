"""The trainer through the Python API, in-process (no start-up cost): behaviours, not plumbing."""
import math

import pytest

import dlrun
from conftest import read_json, read_jsonl


def run(tmp_path, name, *overrides):
    return dlrun.run(["logger=quiet", *overrides], run_dir=str(tmp_path / name))


def test_python_api_returns_history_and_summary(tmp_path):
    result = run(tmp_path, "api", "trainer.epochs=3", "dataset=synthetic")
    assert [r["epoch"] for r in result["history"]] == [1, 2, 3]
    assert result["summary"]["test_accuracy"] > 0.9  # two moons with noise 0.2; chance is 0.5
    assert read_json(tmp_path / "api" / "summary.json")["status"] == "completed"
    assert math.isclose(result["history"][-1]["val_loss"], read_jsonl(tmp_path / "api" / "metrics.jsonl")[-1]["val_loss"])
    assert (tmp_path / "api" / ".hydra" / "config.yaml").exists()


def test_early_stopping_stops_and_tests_the_best_epoch(tmp_path):
    result = run(tmp_path, "es", "trainer.epochs=200", "trainer.early_stopping.patience=3", "optimizer.lr=0.01")
    summary, rows = result["summary"], result["history"]
    assert summary["epochs_completed"] == len(rows) < 200
    assert "early stopping" in summary["stop_reason"]
    best = min(rows, key=lambda r: r["val_loss"])
    assert summary["best_epoch"] == best["epoch"] == len(rows) - 3


def test_dataloader_path_matches_in_memory_path(tmp_path):
    """Same seed, same order, same numbers: the DataLoader path serves exactly the same batches."""
    common = ["trainer.epochs=3", "trainer.deterministic=true"]
    a = run(tmp_path, "a", *common)["history"]
    b = run(tmp_path, "b", *common, "dataset.in_memory=false", "dataset.num_workers=1")["history"]
    assert [r["val_loss"] for r in a] == pytest.approx([r["val_loss"] for r in b], rel=1e-6)


def test_deterministic_reruns_are_bit_identical(tmp_path):
    common = ["trainer.epochs=2", "trainer.deterministic=true", "model.dropout=0.3", "seed=7"]
    a = run(tmp_path, "a", *common)["summary"]
    b = run(tmp_path, "b", *common)["summary"]
    c = run(tmp_path, "c", *common[:-1], "seed=8")["summary"]
    assert a["test_loss"] == b["test_loss"] != c["test_loss"]


def test_regression_on_synthetic_data(tmp_path):
    result = run(tmp_path, "reg", "dataset=synthetic", "dataset.kind=regression", "dataset.n_features=5",
                 "trainer.epochs=15")
    summary, rows = result["summary"], result["history"]
    assert "test_accuracy" not in summary and "val_accuracy" not in rows[0]
    assert summary["test_loss"] < 0.05  # predicting the mean of a unit-variance target scores ~1.0
    assert rows[-1]["val_loss"] < rows[0]["val_loss"]


def test_full_batch_takes_one_step_per_epoch(tmp_path):
    rows = run(tmp_path, "gd", "trainer.batch_size=full", "optimizer=sgd", "optimizer.lr=0.5",
               "trainer.epochs=5")["history"]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5]
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]


def test_refuses_to_overwrite_a_finished_run(tmp_path):
    run(tmp_path, "done", "debug=smoke")
    before = (tmp_path / "done" / "summary.json").read_bytes()
    with pytest.raises(dlrun.errors.DlrunError, match="already holds a run"):
        run(tmp_path, "done", "debug=smoke")
    assert (tmp_path / "done" / "summary.json").read_bytes() == before


def test_dataloader_workers_live_across_epochs_and_serve_each_epochs_order():
    """persistent_workers: the same worker processes serve every pass, each pass in its own shuffle."""
    import torch

    from dlrun.data import DataBundle, Split
    from dlrun.data.loader import Batches

    x, y = torch.arange(40.0).unsqueeze(1), torch.arange(40) % 2
    data = DataBundle(Split(x, y), Split(x, y), Split(x, y), input_shape=(1,), num_outputs=2)
    t = Batches(torch.device("cpu"), 8, in_memory=False, num_workers=2)
    passes, pids = [], []
    for epoch in (1, 2):
        order = t.order(data.train, epoch)
        passes.append(torch.cat([xb.flatten() for xb, _ in t(data.train, order)]))
        assert passes[-1].tolist() == x[order].flatten().tolist()  # exactly the epoch's shuffle
        pids.append(sorted(w.pid for w in t._loaders[id(data.train)]._iterator._workers))
    assert not torch.equal(passes[0], passes[1])
    assert pids[0] == pids[1] and len(pids[0]) == 2  # started once, alive across epochs
