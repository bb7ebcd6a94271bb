"""Non-finite losses (stop or skip) and gradient clipping by norm and by value."""
import math

import pytest
import torch

from conftest import assert_clean_error, read_json, read_jsonl, run_dlrun, supervised_trainer
from dlrun.data import DataBundle, Split
from dlrun.errors import DlrunError
from dlrun.registry import create_model
from dlrun.tasks.base import build_task
from faults.helpers import TINY, finite_weights, load, poison_losses, run_patched


@pytest.mark.slow  # the default suite has tests/test_cli.py's divergence in epoch 2
def test_a_diverging_run_is_stopped_naming_epoch_and_step(tmp_path):
    run = tmp_path / "run"
    proc = run_dlrun("debug=smoke", "logger=quiet", "optimizer=sgd", "optimizer.lr=1e30", f"hydra.run.dir={run}")
    assert_clean_error(proc, 1, "non-finite at epoch 1, step 2", "optimizer.lr")
    assert read_json(run / "summary.json")["status"] == "failed"


@pytest.mark.slow
def test_a_nan_in_epoch_2_stops_before_any_checkpoint_holds_it(tmp_path):
    run = tmp_path / "run"
    # batch 43 = epoch 2, step 3; the periodic save at step 45 checks first and refuses to write it
    proc = run_patched(poison_losses(43), *TINY, f"hydra.run.dir={run}")
    assert_clean_error(proc, 1, "non-finite at epoch 2, step 3", f"the last good checkpoint is {run}/checkpoints/last.pt (epoch 1)")
    state = load(run / "checkpoints" / "last.pt")
    assert state["step"] == 40 and finite_weights(state)
    assert [r["epoch"] for r in read_jsonl(run / "metrics.jsonl")] == [1]
    summary = read_json(run / "summary.json")
    assert summary["status"] == "failed" and "epoch 2, step 3" in summary["error"]


@pytest.mark.slow  # the default suite checks the skipped step itself, below
def test_on_nonfinite_skip_skips_and_counts(tmp_path):
    run = tmp_path / "run"
    proc = run_patched(poison_losses(3, 7, 50), *TINY, "trainer.on_nonfinite=skip", f"hydra.run.dir={run}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = read_jsonl(run / "metrics.jsonl")
    assert [r["nonfinite_skips"] for r in rows] == [2, 1, 0]
    assert all(math.isfinite(r["train_loss"]) for r in rows)
    assert "nonfinite_skips" in (run / "metrics.csv").read_text().splitlines()[0]
    summary = read_json(run / "summary.json")
    assert summary["status"] == "completed" and summary["nonfinite_skips"] == 3
    state = load(run / "checkpoints" / "last.pt")
    assert state["step"] == 3 * 40 - 3 and finite_weights(state)  # skipped batches are not optimizer steps


# ---- the step itself, in process -------------------------------------------------------------------
def trainer(tmp_path, optimizer="sgd", **kw):
    """The loop of a Trainer (its `trainer` attribute saves): one batch of 16, a 3-class MLP with batch norm."""
    torch.manual_seed(0)
    x, y = torch.randn(16, 4) * 100, torch.randint(0, 3, (16,))  # large inputs: large gradients
    data = DataBundle(Split(x, y), Split(x, y), Split(x, y), input_shape=(4,), num_outputs=3)
    model = create_model("mlp", input_shape=(4,), num_outputs=3, hidden=[8], norm="batch")
    opt = torch.optim.SGD(model.parameters(), lr=1.0) if optimizer == "sgd" else torch.optim.Adam(model.parameters())
    return supervised_trainer(model, opt, build_task("multiclass", {"name": "auto"}, 3), data, tmp_path,
                              batch_size=16, **kw).loop


def snapshot(t) -> dict:
    return {k: v.clone() for k, v in t.model.state_dict().items()}


def test_a_skipped_step_changes_no_weight_statistic_or_optimizer_state(tmp_path):
    t = trainer(tmp_path, optimizer="adam", on_nonfinite="skip")
    t.model.train()
    before = snapshot(t)
    x = t.data.train.x.clone()
    x[0, 0] = float("nan")
    assert t._step(x, t.data.train.y) is None
    after = snapshot(t)
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and batch-norm running stats
    assert t.optimizer.state_dict()["state"] == {} and t.step == 0
    assert t._step(t.data.train.x, t.data.train.y) is not None and t.step == 1


@pytest.mark.parametrize("setting", [{"clip_value": 1e-3}, {"max_grad_norm": 1e-3}])
def test_gradient_clipping_bounds_the_update(tmp_path, setting):
    t = trainer(tmp_path, **setting)  # SGD with lr 1: the update is minus the (clipped) gradient
    t.model.train()
    before = snapshot(t)
    t._step(t.data.train.x, t.data.train.y)
    deltas = [(t.model.state_dict()[k] - before[k]).flatten() for k, p in t.model.named_parameters()]
    size = torch.cat(deltas).abs().max() if "clip_value" in setting else torch.cat(deltas).norm()
    assert size == pytest.approx(1e-3, rel=1e-3)  # the raw gradient is far larger: clipped to exactly the bound


def test_weights_reached_by_a_non_finite_gradient_are_never_saved(tmp_path):
    t = trainer(tmp_path).trainer
    path = tmp_path / "checkpoints" / "last.pt"
    t.save(path)
    good = path.read_bytes()
    with torch.no_grad():
        next(t.model.parameters())[0, 0] = float("inf")
    with pytest.raises(DlrunError, match=f"weights became non-finite.*the last good checkpoint is {path}"):
        t.save(path)
    assert path.read_bytes() == good
