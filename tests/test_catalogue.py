"""Tasks, losses, metrics, initialisation, activations and regularisation (in-process, small data)."""
import json

import pytest
import torch

import dlrun
from dlrun.errors import DlrunError


def run(tmp_path, name, *overrides):
    return dlrun.run(["logger=quiet", *overrides], run_dir=str(tmp_path / name))


def test_multiclass_metrics_and_confusion_matrix(tmp_path):
    s = run(tmp_path, "mc", "trainer.epochs=5")["summary"]
    cm = torch.tensor(s["confusion_matrix"])
    assert cm.shape == (10, 10) and cm.sum() == s["n_test"]
    assert cm.diag().sum() / cm.sum() == pytest.approx(s["test_accuracy"])
    assert 0.9 < s["test_f1_macro"] <= 1 and s["task"] == "multiclass" and s["loss"] == "cross_entropy"
    assert (tmp_path / "mc" / "confusion_matrix.png").stat().st_size > 5000


@pytest.mark.parametrize("overrides,task,loss", [
    (["dataset=synthetic", "dataset.kind=student"], "binary", "bce"),  # seed 001's pass/fail toy
    (["dataset.classes=[3,8]"], "binary", "bce"),  # a binary subset of digits, one sigmoid output
    (["dataset.classes=[3,8]", "task=multiclass"], "multiclass", "cross_entropy"),  # two softmax outputs
])
def test_binary_tasks_learn(tmp_path, overrides, task, loss):
    s = run(tmp_path, "b", *overrides, "trainer.epochs=5")["summary"]
    assert (s["task"], s["loss"]) == (task, loss)
    assert s["test_accuracy"] > 0.88  # chance is 0.5
    assert torch.tensor(s["confusion_matrix"]).shape == (2, 2)


def test_multilabel_task(tmp_path):
    s = run(tmp_path, "ml", "dataset=synthetic", "dataset.kind=multilabel", "dataset.n_features=10",
            "trainer.epochs=10")["summary"]
    assert s["task"] == "multilabel" and s["test_accuracy"] > 0.7 and 0 < s["test_f1_macro"] < 1


@pytest.mark.parametrize("loss", ["mse", "mae", "huber"])
def test_regression_losses_and_metrics(tmp_path, loss):
    s = run(tmp_path, loss, "dataset=synthetic", "dataset.kind=regression", f"loss={loss}", "trainer.epochs=8")["summary"]
    assert s["loss"] == loss and s["test_r2"] > 0.95 and s["test_mae"] < 0.25
    assert s["test_mse"] == pytest.approx(s["test_loss"], rel=1e-4) if loss == "mse" else True


@pytest.mark.parametrize("overrides,message", [
    (["loss=bce"], "loss=bce does not fit task=multiclass: bce (sigmoid outputs) is for binary"),
    (["dataset.classes=[3,8]", "loss=cross_entropy"], "use loss=bce (sigmoid output)"),
    (["dataset=synthetic", "dataset.kind=regression", "loss=cross_entropy"], "task=regression takes loss=mse or mae or huber"),
    (["task=binary"], "task=binary needs two classes, and this dataset has 10"),
])
def test_mismatched_task_and_loss_are_rejected(tmp_path, overrides, message):
    with pytest.raises(DlrunError) as err:
        run(tmp_path, "bad", *overrides, "debug=smoke")
    assert message in str(err.value)


def test_zeros_init_cannot_break_symmetry_but_he_learns(tmp_path):
    zeros = run(tmp_path, "z", "model.init=zeros", "trainer.epochs=5")["summary"]
    he = run(tmp_path, "he", "model.init=he", "trainer.epochs=5")["summary"]
    assert zeros["test_accuracy"] < 0.2 < 0.9 < he["test_accuracy"]


@pytest.mark.parametrize("act", ["sigmoid", "tanh", "relu", "leaky_relu", "elu", "gelu", "maxout", "linear"])
def test_every_activation_trains(tmp_path, act):
    s = run(tmp_path, act, f"model.activation={act}", "trainer.epochs=4", "optimizer.lr=0.003")["summary"]
    assert s["test_accuracy"] > 0.85, act


def test_maxout_doubles_the_hidden_weights():
    m2 = dlrun.create_model("mlp", input_shape=(64,), num_outputs=10, hidden=[32], activation="maxout", maxout_k=2)
    assert m2(torch.zeros(3, 64)).shape == (3, 10)
    assert sum(p.numel() for p in m2.parameters()) == 64 * 64 + 64 + 32 * 10 + 10


def test_l2_penalty_shrinks_the_weights(tmp_path):
    def weight_norm(name, *ov):
        run(tmp_path, name, "trainer.epochs=5", *ov)
        state = torch.load(tmp_path / name / "checkpoints" / "last.pt", weights_only=True)["model"]
        return sum(v.pow(2).sum() for k, v in state.items() if k.endswith("weight")).sqrt().item()

    assert weight_norm("l2", "trainer.l2=50") < 0.7 * weight_norm("plain")


def test_optimizers_and_schedules(tmp_path):
    rows = run(tmp_path, "gd", "optimizer=gd", "trainer.epochs=3")["history"]
    assert [r["step"] for r in rows] == [1, 2, 3]  # full batch: one step per epoch
    rows = run(tmp_path, "inv", "scheduler=inverse_time", "scheduler.decay=1.0", "trainer.epochs=3")["history"]
    assert [r["lr"] for r in rows] == pytest.approx([1e-3, 1e-3 / 2, 1e-3 / 3])  # lr0 / (1 + k t)
    rows = run(tmp_path, "wc", "scheduler=warmup_cosine", "trainer.epochs=4")["history"]
    lrs = [r["lr"] for r in rows]
    assert lrs[0] < lrs[1] and lrs[2] > lrs[3]  # warm up, then anneal
    for opt in ["sgd", "momentum", "momentum_ema", "nesterov", "adagrad", "adadelta", "rmsprop", "adam", "adamw"]:
        s = run(tmp_path, opt, f"optimizer={opt}", "trainer.epochs=3")["summary"]
        assert s["test_accuracy"] > 0.3, opt  # chance is 0.1 (plain SGD at lr=0.01 is the slowest here)
