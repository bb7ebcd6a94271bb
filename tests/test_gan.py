"""The GAN (alternating discriminator and generator updates) and the MMD that scores what it generates."""
from __future__ import annotations

import math

import pytest
import torch
from omegaconf import OmegaConf

import dlrun
from conftest import ROOT, assert_config_mistake
from dlrun.data import build_dataset
from dlrun.registry import create_model
from dlrun.tasks.losses import MMD


def test_mmd_is_the_unbiased_kernel_two_sample_statistic():
    a, b = torch.tensor([[0.0], [1.0]]), torch.tensor([[3.0], [5.0]])
    k = lambda u, v: sum(math.exp(-(u - v) ** 2 / (2 * s * s)) for s in MMD.SCALES)  # noqa: E731 (1 feature)
    expected = k(0, 1) + k(3, 5) - 2 * (k(0, 3) + k(0, 5) + k(1, 3) + k(1, 5)) / 4  # pairs i != j within each
    assert MMD()(a, b).item() == pytest.approx(expected, rel=1e-5)
    torch.manual_seed(0)
    same = MMD()(torch.randn(500, 10), torch.randn(500, 10)).item()
    shifted = MMD()(torch.randn(500, 10), torch.randn(500, 10) + 1.0).item()
    assert abs(same) < 0.01 < 0.1 < shifted


def test_each_half_of_a_step_moves_only_its_own_network():
    torch.manual_seed(0)
    gan = create_model("gan", input_shape=(1, 8, 8), num_outputs=64, latent=4, hidden=[16], d_hidden=[16])
    opt = torch.optim.Adam(gan.parameters(), lr=0.01)  # Adam: its momentum must not move a network either
    x = torch.randn(32, 1, 8, 8)
    snapshot = lambda net: [p.detach().clone() for p in net.parameters()]  # noqa: E731
    same = lambda net, before: all(torch.equal(p, q) for p, q in zip(net.parameters(), before))  # noqa: E731
    gan.train_step(x, opt)  # both networks now have Adam state
    g0, d0 = snapshot(gan.generator), snapshot(gan.discriminator)
    gan._update(gan.discriminator(x).mean(), opt, gan.discriminator)
    assert same(gan.generator, g0) and not same(gan.discriminator, d0)
    d1 = snapshot(gan.discriminator)
    gan._update(gan.discriminator(gan.generate(8)).mean(), opt, gan.generator)
    assert same(gan.discriminator, d1) and not same(gan.generator, g0)


def test_a_gan_learns_digits_better_than_gaussian_noise(tmp_path):
    s = dlrun.run(["experiment=gan_digits", "optimizer.lr=0.001", "trainer.epochs=60", "logger=quiet"],
                  run_dir=str(tmp_path))["summary"]
    assert s["task"] == "generation" and s["loss"] == "mmd" and "test_accuracy" not in s
    data = build_dataset(OmegaConf.load(ROOT / "conf" / "dataset" / "digits.yaml"))
    test = data.prepare(data.test.x)
    noise = MMD()(torch.randn_like(test), test).item()  # the per-pixel mean and spread, nothing more (~0.49)
    assert s["test_mmd"] < 0.6 * noise  # ~0.15-0.18 after 60 epochs; real training digits score ~0.007
    assert (tmp_path / "samples.png").stat().st_size > 5000


CLI_CASE = ["model=gan", "trainer.max_grad_norm=1.0"]


@pytest.mark.parametrize("overrides,message", [
    (CLI_CASE, "model=gan runs its own update, which does not apply trainer.max_grad_norm"),
    (["model=gan", "task=multiclass"], "model=gan generates inputs, so it needs task=generation"),
    (["model=gan", "loss=mse"], "loss=mse does not fit task=generation"),
])
def test_gan_mistakes_are_clear_errors(tmp_path, overrides, message):
    assert_config_mistake(tmp_path, overrides, message, through_cli=overrides == CLI_CASE)


def test_the_summary_lists_the_discriminator_that_forward_does_not_call():
    from dlrun.models.summary import count_params, layer_table

    gan = create_model("gan", input_shape=(1, 8, 8), num_outputs=64)
    rows = layer_table(gan, (1, 8, 8))
    assert sum(n for _, _, n in rows) == count_params(gan)
    assert [r for r in rows if r[0].startswith("discriminator.0")][0][1] == "- (not in forward)"
