"""trainer.precision (autocast, GradScaler), channels_last and compile: on the CPU here, on a GPU when one exists."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from conftest import read_json, run_dlrun
from dlrun.train.loop import SupervisedLoop

GPU = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (the device tool lends one to some sessions)")


def _train(tmp_path, name, *overrides, epochs=4):
    run = tmp_path / name
    proc = run_dlrun(f"trainer.epochs={epochs}", "logger=quiet", f"hydra.run.dir={run}", *overrides)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return run, read_json(run / "summary.json")


def _sweep(tmp_path, key, values, *overrides, epochs=4):
    """One multirun over `key` (one process start for all); {value: (job folder, summary)}."""
    proc = run_dlrun("-m", f"{key}={','.join(values)}", f"trainer.epochs={epochs}", "logger=quiet",
                     f"hydra.sweep.dir={tmp_path}", *overrides)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return {v: (tmp_path / str(i), read_json(tmp_path / str(i) / "summary.json")) for i, v in enumerate(values)}


def test_bf16_and_fp16_autocast_train_and_fp16_keeps_its_grad_scaler(tmp_path):
    runs = _sweep(tmp_path, "trainer.precision", ["32", "bf16", "fp16"])
    for p, (_, summary) in runs.items():
        assert summary["status"] == "completed", p
        assert summary["test_accuracy"] >= 0.9, (p, summary["test_accuracy"])
    # autocast really ran: half-precision matmuls give a (slightly) different model than fp32
    assert abs(runs["bf16"][1]["test_loss"] - runs["32"][1]["test_loss"]) > 1e-6
    assert abs(runs["bf16"][1]["test_loss"] - runs["32"][1]["test_loss"]) < 0.05
    fp16_state = torch.load(runs["fp16"][0] / "checkpoints" / "last.pt", weights_only=True)
    assert fp16_state["scaler"]["scale"] > 0  # the GradScaler's state is saved, so a resume continues it
    assert torch.load(runs["32"][0] / "checkpoints" / "last.pt", weights_only=True)["scaler"] is None


def test_channels_last_feeds_nhwc_and_trains_a_cnn_like_nchw(tmp_path):
    stub = SimpleNamespace(data=SimpleNamespace(prepare=lambda x: x.float() / 255), memory_format=torch.channels_last)
    x = SupervisedLoop._input(stub, torch.randint(0, 255, (4, 3, 8, 8), dtype=torch.uint8))
    assert x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    runs = _sweep(tmp_path, "trainer.channels_last", ["false", "true"], "model=cnn", epochs=10)
    nchw, nhwc = runs["false"][1], runs["true"][1]
    assert nhwc["test_accuracy"] >= 0.9
    assert abs(nhwc["test_loss"] - nchw["test_loss"]) < 1e-3  # the same maths in another memory layout


@pytest.mark.slow
def test_compile_gives_the_eager_result(tmp_path):
    """torch.compile on the CPU (inductor, C++ codegen): ~40 s of compiling for the same numbers."""
    _, eager = _train(tmp_path, "eager", epochs=2)
    _, compiled = _train(tmp_path, "compiled", "trainer.compile=true", epochs=2)
    assert compiled["test_accuracy"] == pytest.approx(eager["test_accuracy"], abs=0.006)
    assert compiled["test_loss"] == pytest.approx(eager["test_loss"], abs=1e-4)


@GPU
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_gpu_amp_channels_last_tf32(tmp_path, precision):
    run, summary = _train(tmp_path, precision, "device=cuda", "model=cnn", f"trainer.precision={precision}",
                          "trainer.channels_last=true", "trainer.tf32=true", epochs=4)
    assert summary["test_accuracy"] >= 0.9
    assert (torch.load(run / "checkpoints" / "last.pt", weights_only=True)["scaler"] is not None) == (precision == "fp16")


@GPU
def test_gpu_compile(tmp_path):
    _, eager = _train(tmp_path, "eager", "device=cuda", "model=cnn", epochs=3)
    _, compiled = _train(tmp_path, "compiled", "device=cuda", "model=cnn", "trainer.compile=true", epochs=3)
    assert compiled["test_accuracy"] >= 0.9
    assert compiled["test_loss"] == pytest.approx(eager["test_loss"], abs=0.02)
