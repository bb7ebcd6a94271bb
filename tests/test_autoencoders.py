"""Autoencoders (dense, conv, denoising) and the VAE, with task=reconstruction."""
from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

import dlrun
from conftest import ROOT, assert_config_mistake, read_json, read_jsonl, run_dlrun, supervised_trainer
from dlrun.data import DataBundle, Split
from dlrun.data.augment import Augment, parse_augment
from dlrun.models.summary import count_params
from dlrun.registry import create_model
from dlrun.tasks.base import build_task


def preset(name: str, input_shape, **override) -> nn.Module:
    """The model as `dlrun model=NAME` builds it (from conf/model/NAME.yaml) for task=reconstruction."""
    kw = OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "model" / f"{name}.yaml"))
    kw.update(override)
    kw.pop("task")
    return create_model(kw.pop("name"), input_shape=input_shape, num_outputs=int(torch.tensor(input_shape).prod()), **kw)


@pytest.mark.parametrize("name,kind", [("autoencoder", "dense"), ("autoencoder", "conv"), ("vae", "dense"),
                                       ("vae", "conv")])
@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32), (1, 7, 9)])
def test_autoencoders_return_their_input_shape(name, kind, shape):
    model = preset(name, shape, kind=kind)
    assert model(torch.randn(2, *shape)).shape == (2, *shape)


def test_dense_autoencoder_is_a_mirrored_mlp_with_a_small_code():
    model = preset("autoencoder", (1, 8, 8), hidden=[32], latent=4)
    assert model.encode(torch.zeros(5, 1, 8, 8)).shape == (5, 4)
    assert count_params(model) == (64 * 32 + 32) + (32 * 4 + 4) + (4 * 32 + 32) + (32 * 64 + 64)


def test_vae_kl_term_is_the_gaussian_kl_to_the_prior_shared_over_the_input_values():
    torch.manual_seed(0)
    vae = preset("vae", (1, 8, 8), beta=0.5).eval()
    x = torch.randn(6, 1, 8, 8)
    vae(x)
    mu, logvar = vae.encode(x)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    kl = torch.distributions.kl_divergence(q, torch.distributions.Normal(0.0, 1.0)).sum(1).mean()
    torch.testing.assert_close(vae.aux_loss, 0.5 * kl / 64)
    assert torch.equal(vae(x), vae(x))  # evaluation decodes the mean: no sampling
    vae.train()
    assert not torch.equal(vae(x), vae(x))  # training decodes a sample
    assert vae.sample(5).shape == (5, 1, 8, 8)


class Scale(nn.Module):
    """y = w * x with w = 1: the identity, with one weight so an optimizer can hold it."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(()))

    def forward(self, x):
        return self.w * x


def test_a_denoising_step_compares_the_output_of_the_noisy_input_with_the_clean_one():
    """With noise of std 0.5 on the input and an identity model, the loss is the noise's variance, 0.25;
    had the target been the noisy input too, it would be 0."""
    torch.manual_seed(0)
    x = torch.randn(4096, 16)
    data = DataBundle(Split(x, torch.zeros(4096)), Split(x, torch.zeros(4096)), Split(x, torch.zeros(4096)),
                      input_shape=(16,), num_outputs=16, task="reconstruction")
    model = Scale()
    trainer = supervised_trainer(model, torch.optim.SGD(model.parameters(), lr=0.0),
                                 build_task("reconstruction", {"name": "auto"}, 16), data, "unused", batch_size=4096,
                                 augment=Augment(parse_augment(["noise:0.5"]), (16,))).loop
    loss, out = trainer._step(x, torch.zeros(4096))
    assert loss.item() == pytest.approx(0.25, rel=0.03)
    assert trainer.evaluate(data.test)["loss"] == pytest.approx(0.0, abs=1e-12)  # no noise when evaluating


def test_autoencoder_and_vae_from_the_cli(tmp_path):
    ae, vae = tmp_path / "ae", tmp_path / "vae"
    proc = run_dlrun("model=autoencoder", "trainer.epochs=8", "logger=quiet", f"hydra.run.dir={ae}")
    assert proc.returncode == 0, proc.stderr
    dlrun.run(["model=vae", "trainer.epochs=8", "logger=quiet"], run_dir=str(vae))  # in-process: cheaper
    s = read_json(ae / "summary.json")
    assert s["task"] == "reconstruction" and s["loss"] == "mse" and "test_accuracy" not in s
    assert s["test_r2"] > 0.6  # explains most of the pixels' variance through a 16-number code
    assert s["test_loss"] == pytest.approx(s["test_mse"], rel=1e-5)
    v = read_json(vae / "summary.json")
    assert v["test_r2"] > 0.3 and v["test_loss"] > v["test_mse"] + 0.01  # the loss adds the KL term
    rows = read_jsonl(vae / "metrics.jsonl")
    assert rows[-1]["train_loss"] < rows[0]["train_loss"] and "train_accuracy" not in rows[0]
    for folder in (ae, vae):
        assert (folder / "reconstructions.png").stat().st_size > 5000
        assert not (folder / "confusion_matrix.png").exists()


def test_a_denoising_conv_autoencoder(tmp_path):
    s = dlrun.run(["model=autoencoder", "model.kind=conv", "model.channels=[16,32]", "dataset.augment=[noise:0.5]",
                   "trainer.epochs=8", "optimizer.lr=0.003", "logger=quiet"], run_dir=str(tmp_path))["summary"]
    assert s["test_r2"] > 0.5  # rebuilt from noisy inputs, scored on clean ones


CLI_CASE = ["model=autoencoder", "task=multiclass"]


@pytest.mark.parametrize("overrides,message", [
    (["model=autoencoder", "task=multiclass"], "model=autoencoder rebuilds its input, so it needs task=reconstruction"),
    (["model=vae", "model.kind=conv", "dataset=synthetic"], "model.kind=conv needs images"),
    (["model=autoencoder", "model.kind=fc"], "unknown model.kind 'fc' for model=autoencoder"),
    (["model=autoencoder", "loss=cross_entropy"], "task=reconstruction takes loss=mse or mae"),
])
def test_autoencoder_mistakes_are_clear_errors(tmp_path, overrides, message):
    assert_config_mistake(tmp_path, overrides, message, through_cli=overrides == CLI_CASE)