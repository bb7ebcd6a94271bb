"""Sequence models (rnn, lstm, gru, transformer) and the sequence problems that need memory."""
from __future__ import annotations

import math

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

import dlrun
from conftest import ROOT, assert_config_mistake
from dlrun.data.sequences import sequences
from dlrun.models.summary import count_params, layer_table
from dlrun.models.transformer import sinusoidal_encoding
from dlrun.registry import create_model

SEQUENCE_MODELS = ["rnn", "lstm", "gru", "transformer"]


def preset(name: str, input_shape, num_outputs: int = 10, **override) -> nn.Module:
    """The model exactly as `dlrun model=NAME` builds it: from conf/model/NAME.yaml."""
    kw = OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "model" / f"{name}.yaml"))
    kw.update(override)
    return create_model(kw.pop("name"), input_shape=input_shape, num_outputs=num_outputs, **kw)


# ---- the models ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", SEQUENCE_MODELS)
@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 32, 32), (20, 2), (64,)])
def test_sequence_models_read_images_sequences_and_flat_features(name, shape):
    model = preset(name, shape, 7)
    assert model(torch.zeros(2, *shape)).shape == (2, 7)
    rows = layer_table(model, shape)
    assert sum(n for _, _, n in rows) == count_params(model)  # the summary's rows add up, attention included


def test_lstm_is_torchs_lstm_over_image_rows_then_a_dense_head():
    """Same weights, same outputs as a hand-written nn.LSTM reading a 3x8x8 image as 8 rows of 24 numbers."""
    ours = create_model("lstm", input_shape=(3, 8, 8), num_outputs=10, hidden=16)
    lstm, head = nn.LSTM(24, 16, batch_first=True), nn.Linear(16, 10)
    assert count_params(ours) == 4 * (24 * 16 + 16 * 16 + 2 * 16) + 16 * 10 + 10
    with torch.no_grad():
        for a, b in zip(ours.parameters(), [*lstm.parameters(), *head.parameters()]):
            b.copy_(a)
        x = torch.randn(5, 3, 8, 8)
        rows = x.permute(0, 2, 1, 3).reshape(5, 8, 24)  # row h: that row of every channel, side by side
        _, (h, _) = lstm(rows)
        torch.testing.assert_close(ours.eval()(x), head(h[-1]))


def test_bidirectional_two_layer_gru_and_relu_rnn_counts():
    gru = create_model("gru", input_shape=(12, 5), num_outputs=3, hidden=8, layers=2, bidirectional=True)
    layer1, layer2 = 3 * (5 * 8 + 8 * 8 + 2 * 8), 3 * (16 * 8 + 8 * 8 + 2 * 8)  # layer 2 reads both directions
    assert count_params(gru) == 2 * (layer1 + layer2) + 16 * 3 + 3
    rnn = create_model("rnn", input_shape=(12, 5), num_outputs=1, hidden=8, nonlinearity="relu")
    assert rnn.rnn.nonlinearity == "relu" and count_params(rnn) == 5 * 8 + 8 * 8 + 2 * 8 + 8 + 1


def test_recurrent_initialisations():
    lstm = preset("lstm", (20, 2), 1, hidden=8, recurrent_init="orthogonal", init="glorot_uniform")
    for w in lstm.rnn.weight_hh_l0.detach().chunk(4):  # each gate's square block is orthogonal
        torch.testing.assert_close(w @ w.T, torch.eye(8), atol=1e-5, rtol=0)
    bias_ih, bias_hh = lstm.rnn.bias_ih_l0.detach().chunk(4), lstm.rnn.bias_hh_l0.detach().chunk(4)
    assert torch.all(bias_ih[1] == 1.0) and torch.all(bias_hh[1] == 0.0)  # forget gate starts open (preset 1.0)
    assert all(torch.all(b == 0) for i, b in enumerate(bias_ih) if i != 1)
    irnn = create_model("rnn", input_shape=(20, 2), num_outputs=1, hidden=8, nonlinearity="relu",
                        recurrent_init="identity")
    assert torch.equal(irnn.rnn.weight_hh_l0.detach(), torch.eye(8))


def test_sinusoidal_positions_are_vaswanis_formula():
    pe = sinusoidal_encoding(30, 16)
    for t, i in [(0, 0), (1, 0), (7, 3), (29, 7)]:
        angle = t / 10000 ** (2 * i / 16)
        assert pe[t, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-5)
        assert pe[t, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-5)
    assert sinusoidal_encoding(4, 5).shape == (4, 5)  # an odd width works too


def test_a_transformer_without_positions_cannot_tell_the_order_of_its_steps():
    """Attention alone is blind to order: with pos=none and a mean over steps, permuting the steps changes
    nothing; the positional encoding is what makes the same steps in another order a different input."""
    torch.manual_seed(0)
    x = torch.randn(4, 10, 3)
    perm = torch.randperm(10)
    blind = preset("transformer", (10, 3), 2, pos="none", pool="mean").eval()
    torch.testing.assert_close(blind(x), blind(x[:, perm]), atol=1e-5, rtol=1e-5)
    seeing = preset("transformer", (10, 3), 2).eval()
    assert not torch.allclose(seeing(x), seeing(x[:, perm]), atol=1e-3)


# ---- the data ---------------------------------------------------------------------------------------------
def test_adding_problem_targets_and_its_trivial_baseline():
    data = sequences("adding", length=30, n_samples=4000)
    x, y = data.train.x, data.train.y
    assert data.input_shape == (30, 2) and data.task == "regression" and len(data.test) == 400
    marks = x[:, :, 1]
    assert torch.all(marks.sum(1) == 2) and torch.all(marks[:, :15].sum(1) == 1)  # one mark in each half
    torch.testing.assert_close((x[:, :, 0] * marks).sum(1, keepdim=True), y)
    trivial = ((data.test.y - 1.0) ** 2).mean().item()  # always answering 1
    assert trivial == pytest.approx(1 / 6, abs=0.015)


def test_recall_problem_labels_are_the_first_step():
    data = sequences("recall", length=12, n_samples=2000, symbols=5)
    x, y = data.train.x, data.train.y
    assert data.input_shape == (12, 5) and data.num_outputs == 5 and data.classes == ["0", "1", "2", "3", "4"]
    assert torch.equal(x[:, 0].argmax(1), y) and torch.all(x.sum(2) == 1)  # one-hot steps
    assert torch.bincount(y, minlength=5).min() > 0.15 * len(y)  # every symbol about equally often


# ---- from the command line ---------------------------------------------------------------------------------
def test_lstm_solves_the_adding_problem(tmp_path):
    s = dlrun.run(["model=lstm", "model.hidden=32", "dataset=sequences", "dataset.length=20", "dataset.n_samples=3000",
                   "optimizer.lr=0.005", "trainer.epochs=20", "logger=quiet"], run_dir=str(tmp_path))["summary"]
    assert s["task"] == "regression" and s["loss"] == "mse"
    assert s["test_mse"] < 0.02 < 0.15  # always answering 1 scores 0.167; the LSTM reaches ~0.003


def test_transformer_recalls_the_first_symbol_only_with_positions(tmp_path):
    common = ["model=transformer", "model.d_model=32", "model.layers=1", "model.ff=64", "dataset=sequences",
              "dataset.kind=recall", "dataset.length=20", "dataset.n_samples=2000", "optimizer.lr=0.003",
              "trainer.epochs=5", "logger=quiet"]
    acc = {pos: dlrun.run([*common, f"model.pos={pos}"], run_dir=str(tmp_path / pos))["summary"]["test_accuracy"]
           for pos in ("sinusoidal", "none")}  # in-process: the CLI path is the adding test's
    assert acc["sinusoidal"] > 0.95 and acc["none"] < 0.5  # chance is 1/8


def test_gru_reads_digits_row_by_row(tmp_path):
    s = dlrun.run(["model=gru", "model.hidden=64", "trainer.epochs=8", "logger=quiet"], run_dir=str(tmp_path))["summary"]
    assert s["test_accuracy"] > 0.85  # 8 steps of 8 pixels; chance 0.1


CLI_CASE = ["model=transformer", "model.heads=5"]


@pytest.mark.parametrize("overrides,message", [
    (["model=transformer", "model.heads=5"], "model.d_model=64 must be a multiple of model.heads=5"),
    (["model=lstm", "model.pool=first"], "unknown pool 'first' for model=lstm. Choose one of last, mean, max"),
    (["model=gru", "+model.nonlinearity=relu"], "model=gru takes neither nonlinearity nor forget_bias"),
    (["dataset=sequences", "dataset.kind=addin"], "dataset.kind='addin' is not allowed"),
    (["dataset=sequences", "dataset.length=1"], "dataset.length=1 is not allowed: an integer >= 2"),
])
def test_sequence_config_mistakes_are_clear_errors(tmp_path, overrides, message):
    assert_config_mistake(tmp_path, overrides, message, through_cli=overrides == CLI_CASE)


@pytest.mark.slow
def test_the_adding_lstm_recipe_reproduces_its_recorded_result(tmp_path):
    """experiment=adding_lstm is job 6 of experiments/sequence_models (test MSE 0.000468, seed 0)."""
    s = dlrun.run(["experiment=adding_lstm", "logger=quiet"], run_dir=str(tmp_path))["summary"]
    assert s["test_mse"] == pytest.approx(0.000468, rel=0.05)
