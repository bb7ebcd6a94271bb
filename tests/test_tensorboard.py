"""logger=tensorboard: real CLI runs write event files in RUN/tb/ whose scalars equal metrics.jsonl."""
from __future__ import annotations

from pathlib import Path

import pytest

from conftest import read_json, read_jsonl, run_dlrun

EPOCH_KEYS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "epoch_time")


def read_events(run: Path):
    """The run's TensorBoard events as TensorBoard itself reads them."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert list((run / "tb").glob("events.out.tfevents.*")), f"no event file in {run / 'tb'}"
    ea = EventAccumulator(str(run / "tb"), size_guidance={"scalars": 0})
    ea.Reload()
    return ea, {tag: {e.step: e.value for e in ea.Scalars(tag)} for tag in ea.Tags()["scalars"]}


def assert_scalars_match_jsonl(run: Path) -> dict:
    rows = read_jsonl(run / "metrics.jsonl")
    _, scalars = read_events(run)
    for key in EPOCH_KEYS:  # one point per epoch, x = epoch; float32 in the event file
        assert scalars[key] == {r["epoch"]: pytest.approx(r[key], rel=1e-6) for r in rows}, key
    return scalars


def test_sweep_jobs_write_scalars_hparams_and_graph(tmp_path):
    """`dlrun -m logger=tensorboard`: each job its own run (SWEEP/N/tb), as `tensorboard --logdir SWEEP` shows them."""
    from tensorboard.plugins.hparams import plugin_data_pb2

    sweep = tmp_path / "sweep"
    proc = run_dlrun("-m", "debug=smoke", "trainer.epochs=2", "logger=tensorboard", "optimizer.lr=0.01,0.001",
                     f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "test_accuracy" in proc.stdout  # the console logger stays on
    for job, lr in (("0", 0.01), ("1", 0.001)):
        run = sweep / job
        assert (run / "metrics.csv").exists()
        scalars = assert_scalars_match_jsonl(run)
        assert sorted(scalars["val_loss"]) == [1, 2] and scalars["lr"][1] == pytest.approx(lr)
        summary = read_json(run / "summary.json")
        assert scalars["final/test_accuracy"] == {2: pytest.approx(summary["test_accuracy"], rel=1e-6)}

        ea, _ = read_events(run)
        assert ea.Tags()["graph"]  # the model graph, traced on one sample
        content = ea.PluginTagToContent("hparams")
        session = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
        hp = session.session_start_info.hparams
        assert hp["optimizer.lr"].number_value == pytest.approx(lr)
        assert hp["model.name"].string_value == "mlp" and hp["status"].string_value == "completed"
        experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
        assert "final/test_accuracy" in {m.name.tag for m in experiment.metric_infos}


def test_tensorboard_alongside_other_logger_settings():
    """`logger.tensorboard=true` adds event files to any logger option; `logger=tensorboard` keeps the default ones."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from dlrun.config import CONF_DIR

    with initialize_config_dir(CONF_DIR, version_base="1.3", job_name="dlrun"):
        quiet = compose("config", overrides=["logger=quiet", "logger.tensorboard=true"]).logger
        tb = compose("config", overrides=["logger=tensorboard"]).logger
        off = compose("config", overrides=["logger=tensorboard", "logger.tensorboard=false"]).logger
    assert OmegaConf.to_container(quiet) == {"console": False, "jsonl": True, "csv": True, "tensorboard": True}
    assert OmegaConf.to_container(tb) == {"console": True, "jsonl": True, "csv": True, "tensorboard": {"graph": True}}
    assert off.tensorboard is False
