"""The airbench model (an airbench94-style fast net), its experiment recipes, and bench_gpu.py's CPU-only skip."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from torch import nn

from conftest import ROOT, read_json, run_dlrun
from dlrun.config import CONF_DIR, validate
from dlrun.errors import DlrunError
from dlrun.models.summary import count_params
from dlrun.registry import create_model


def airbench_params(c: int, widths=(64, 256, 256), classes: int = 10) -> int:
    """By hand: 2x2 stem (bias) + BN, per block two bias-free 3x3 convs with a BN each, a bias-free head."""
    stem = 8 * c
    n, ch = c * stem * 4 + stem + 2 * stem, stem
    for w in widths:
        n += ch * w * 9 + 2 * w + w * w * 9 + 2 * w
        ch = w
    return n + ch * classes


@pytest.mark.parametrize("shape,pools", [((1, 8, 8), 2), ((1, 28, 28), 3), ((3, 32, 32), 3)])
def test_airbench_adapts_to_the_input(shape, pools):
    kw = OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "model" / "airbench.yaml"))
    model = create_model(kw.pop("name"), input_shape=shape, num_outputs=10, **kw)
    assert model(torch.randn(3, *shape)).shape == (3, 10)
    assert count_params(model) == airbench_params(shape[0])  # 1,963,320 grey, 1,972,840 RGB (airbench94's net)
    # 8x8 digits: 7x7 after the stem, then 3x3 and 1x1; the third block keeps 1x1 instead of pooling to nothing
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == pools
    assert model[-2].bias is None and model[-1].factor == pytest.approx(1 / 9, rel=1e-5)


def test_airbench_widths_and_errors():
    model = create_model("airbench", input_shape=(3, 16, 16), num_outputs=4, widths=[8, 16])
    assert model(torch.zeros(2, 3, 16, 16)).shape == (2, 4)
    assert count_params(model) == airbench_params(3, (8, 16), 4)
    with pytest.raises(DlrunError, match="image inputs"):
        create_model("airbench", input_shape=(64,), num_outputs=10)


def test_airbench_learns_digits_from_the_cli(tmp_path):
    proc = run_dlrun("model=airbench", "trainer.epochs=3", "logger=quiet", "trainer.summary=false",
                     f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    summary = read_json(tmp_path / "summary.json")
    assert summary["status"] == "completed" and summary["params"] == 1_963_320
    assert summary["test_accuracy"] >= 0.9  # chance is 0.1; 0.99 after 10 epochs


EXPECTED = {  # experiment -> keys that make the recipe
    "airbench_cifar10": {"model.name": "airbench", "dataset.name": "cifar10", "dataset.download": False,
                         "device": "cuda", "trainer.precision": "bf16", "trainer.compile": True},
    "airbench_fashion": {"model.name": "airbench", "dataset.name": "fashion_mnist", "device": "auto",
                         "trainer.precision": "32", "trainer.compile": False},
}
COMMON = {"optimizer.name": "sgd", "optimizer.nesterov": True, "optimizer.momentum": 0.85, "trainer.batch_size": 1024,
          "loss.name": "cross_entropy", "loss.label_smoothing": 0.2, "scheduler.name": "warmup_cosine",
          "trainer.channels_last": True, "trainer.tf32": True, "logger.console": False}


@pytest.mark.parametrize("experiment", list(EXPECTED))
def test_airbench_experiments_compose_and_validate(experiment):
    with initialize_config_dir(CONF_DIR, version_base="1.3", job_name="t"):
        cfg = compose("config", overrides=[f"experiment={experiment}"])
    validate(cfg, added=set())  # a key the schemas do not know would be refused here
    for key, value in {**COMMON, **EXPECTED[experiment]}.items():
        assert OmegaConf.select(cfg, key) == value, (key, OmegaConf.select(cfg, key))
    assert cfg.dataset.augment[0] == "hflip" and cfg.dataset.augment[1].startswith("translation:")
    assert 8 <= cfg.trainer.epochs <= 12


def test_cfg_job_prints_the_cifar_recipe():
    proc = run_dlrun("--cfg", "job", "experiment=airbench_cifar10")
    assert proc.returncode == 0, proc.stderr
    cfg = OmegaConf.create(proc.stdout)
    assert cfg.model.name == "airbench" and cfg.trainer.precision == "bf16" and cfg.optimizer.nesterov


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU: the benchmark would run")
def test_bench_gpu_skips_without_cuda():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_gpu.py")], capture_output=True,
                          text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "no CUDA GPU: skipped" in proc.stdout
