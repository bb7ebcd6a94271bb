"""The real `dlrun` command on real (small) data: numbers, files and messages."""
import csv
import os
import subprocess
import sys

import pytest

from conftest import FASHION, ROOT, assert_clean_error, read_json, read_jsonl, run_dlrun

SUMMARY_KEYS = {"status", "epochs_completed", "params", "n_train", "n_val", "n_test", "test_loss",
                "test_accuracy", "best_epoch", "wall_time", "versions"}
ROW_KEYS = {"epoch", "train_loss", "val_loss", "val_accuracy", "lr", "epoch_time"}


def test_default_run_learns_digits_and_writes_the_run_folder(run_dir):
    proc = run_dlrun(f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr
    summary = read_json(run_dir / "summary.json")
    assert SUMMARY_KEYS <= set(summary)
    assert summary["status"] == "completed" and summary["epochs_completed"] == 20
    assert summary["test_accuracy"] >= 0.95
    assert (summary["n_train"], summary["n_val"], summary["n_test"]) == (1258, 180, 359)  # 1797 digits
    assert summary["params"] == 64 * 256 + 256 + 256 * 128 + 128 + 128 * 10 + 10
    rows = read_jsonl(run_dir / "metrics.jsonl")
    assert [r["epoch"] for r in rows] == list(range(1, 21))
    assert all(ROW_KEYS <= set(r) for r in rows)
    assert rows[-1]["train_loss"] < rows[0]["train_loss"] / 5
    assert all(r["epoch_time"] > 0 and r["lr"] == 0.001 for r in rows)
    with open(run_dir / "metrics.csv") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == list(range(1, 21))
    assert (run_dir / ".hydra" / "config.yaml").exists()
    assert (run_dir / "checkpoints" / "last.pt").exists() and (run_dir / "checkpoints" / "best.pt").exists()
    best = min(rows, key=lambda r: r["val_loss"])["epoch"]
    assert summary["best_epoch"] == best
    out = proc.stdout
    assert "Total params: 50,826" in out and "test_accuracy" in out  # model summary and final table


def test_cnn_with_adam_on_digits(run_dir):
    proc = run_dlrun("model=cnn", "optimizer=adam", "trainer.epochs=12", f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr
    summary = read_json(run_dir / "summary.json")
    assert summary["test_accuracy"] >= 0.93
    assert "Conv2d" in proc.stdout


def test_debug_smoke_sweeps_every_model_in_one_multirun(tmp_path):
    proc = run_dlrun("-m", "model=perceptron,mlp,cnn", "debug=smoke", "trainer.batch_size=16",
                     f"hydra.sweep.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    for job, model in enumerate(["perceptron", "mlp", "cnn"]):
        rows = read_jsonl(tmp_path / str(job) / "metrics.jsonl")
        assert len(rows) == 1 and rows[0]["step"] == 2  # two optimizer steps, then val and test
        assert read_json(tmp_path / str(job) / "summary.json")["model"] == model


@pytest.mark.slow  # tests/test_sweeps.py checks the same, and more
def test_a_failing_sweep_job_is_reported_and_the_others_run(tmp_path):
    proc = run_dlrun("-m", "optimizer.lr=0.001,1e12", "optimizer=sgd", "trainer.epochs=2", "logger=quiet",
                     f"hydra.sweep.dir={tmp_path}")
    assert_clean_error(proc, 1, "job 1 failed (optimizer.lr=1000000000000.0", "non-finite at epoch 1", "1 job(s) of the sweep failed")
    assert read_json(tmp_path / "0" / "summary.json")["status"] == "completed"
    assert read_json(tmp_path / "1" / "summary.json")["status"] == "failed"


def test_non_finite_loss_stops_with_epoch_and_step_and_keeps_the_last_good_checkpoint(run_dir):
    # epoch 1 trains normally at lr=1e-3, then the schedule multiplies the rate by 1e9
    proc = run_dlrun("optimizer=sgd", "optimizer.lr=0.01", "scheduler=exponential", "scheduler.gamma=1e9",
                     "trainer.log_every=1", f"hydra.run.dir={run_dir}")
    assert_clean_error(proc, 1, "non-finite at epoch 2, step", "last good checkpoint", "(epoch 1)")
    summary = read_json(run_dir / "summary.json")
    assert summary["status"] == "failed" and summary["epochs_completed"] == 1
    import torch
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert state["epoch"] == 1 and all(torch.isfinite(v).all() for v in state["model"].values())


def test_list_models_and_help_do_not_import_torch():
    proc = run_dlrun("list", "models")
    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    # exactly what model=OPTION accepts: the built-in models and their presets
    assert [ln.split()[0] for ln in lines] == ["airbench", "autoencoder", "charlm", "cnn", "cnn_seed2x", "cnn_seed3x",
                                               "dqn", "gan", "graph", "gru", "inception", "lenet5", "lstm", "mlp",
                                               "perceptron", "q_learning", "resnet", "rnn", "seq2seq", "sequential",
                                               "sequential_seed_conv", "transformer", "tv", "unet", "vae",
                                               "value_iteration", "vgg", "word2vec", "yolov1"]
    assert all(len(ln.split(maxsplit=1)) == 2 for ln in lines)  # every name has a description
    assert run_dlrun("list", "optimizers").stdout.split()[0] == "adadelta"
    code = ("import sys; from dlrun import cli\n"
            "for argv in (['--help'], ['list', 'datasets'], ['--cfg', 'job', 'model=cnn']):\n"
            "    sys.argv = ['dlrun', *argv]\n"
            "    try: cli.main()\n"
            "    except SystemExit as e: assert not e.code, e.code\n"
            "print('TORCH', 'torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "TORCH False" in proc.stdout
    assert "list" in proc.stdout and "model:" in proc.stdout and "optimizer:" in proc.stdout  # --help
    assert "channels:" in proc.stdout  # --cfg job printed the cnn config


def test_a_successful_run_runs_exit_handlers_and_skips_module_teardown(tmp_path):
    """`dlrun` leaves with os._exit after its exit handlers: torch's module teardown (1-2 s) is skipped."""
    (tmp_path / "sitecustomize.py").write_text(  # both markers named after the program: dlrun, or the plot helper
        "import atexit, pathlib, sys\n"
        f"out = pathlib.Path({str(tmp_path)!r})\n"
        "class Teardown:\n"
        "    path = None\n"
        "    def __del__(self, open=open):\n"
        "        if self.path: open(self.path, 'w').write('1')\n"
        "marker = Teardown()\n"
        "def at_exit():\n"
        "    name = pathlib.Path(sys.argv[0]).name\n"
        "    (out / f'atexit_{name}').write_text('1')\n"
        "    marker.path = str(out / f'teardown_{name}')\n"
        "atexit.register(at_exit)\n")
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    proc = run_dlrun("logger=quiet", "trainer.epochs=1", f"hydra.run.dir={tmp_path / 'ok'}", env=env)
    assert proc.returncode == 0, proc.stderr
    assert read_json(tmp_path / "ok" / "summary.json")["status"] == "completed"
    assert (tmp_path / "atexit_dlrun").exists() and not (tmp_path / "teardown_dlrun").exists()
    (tmp_path / "atexit_dlrun").unlink()
    proc = run_dlrun("logger=quiet", "trainer.epochs=1", "device=cuda:99", env=env)  # fails after torch: usual exit
    assert proc.returncode != 0 and "error:" in proc.stderr
    assert (tmp_path / "atexit_dlrun").exists() and (tmp_path / "teardown_dlrun").exists()


def at_dlrun_exit(folder, setup: str, write: str) -> dict:
    """The env of a `dlrun` process that runs `setup` (Python source) at its start and, at its exit, writes the
    text `write` evaluates to (a Python expression) to folder/out.txt; through a sitecustomize.py in `folder`."""
    (folder / "sitecustomize.py").write_text(
        "import atexit, pathlib, sys\n" + setup +
        "def at_exit():\n"
        "    if pathlib.Path(sys.argv[0]).name == 'dlrun':\n"
        f"        pathlib.Path({str(folder / 'out.txt')!r}).write_text({write})\n"
        "atexit.register(at_exit)\n")
    return {"PYTHONPATH": os.pathsep.join([str(folder), os.environ.get("PYTHONPATH", "")])}


def test_a_default_run_imports_only_what_it_uses(tmp_path):
    """Every task and model module is imported to fill the registries; the libraries only some of them use
    (torchvision: 1-3 s, torchmetrics, gymnasium, sacrebleu, onnx) must wait until a run needs them."""
    env = at_dlrun_exit(tmp_path, "", "' '.join(sorted(sys.modules))")
    proc = run_dlrun("logger=quiet", "trainer.epochs=1", f"hydra.run.dir={tmp_path / 'run'}", env=env)
    assert proc.returncode == 0, proc.stderr
    loaded = {name.split(".")[0] for name in (tmp_path / "out.txt").read_text().split()}
    assert "torch" in loaded and "dlrun" in loaded
    assert not loaded & {"torchvision", "torchmetrics", "gymnasium", "sacrebleu", "onnx", "onnxruntime",
                         "matplotlib"}, loaded & {"torchvision", "torchmetrics", "gymnasium", "sacrebleu", "onnx"}


def test_no_garbage_collection_while_a_run_starts_and_frozen_after(tmp_path):
    """dlrun/train/startup.py: the collector is off while torch loads and the job is built, then every object
    alive is frozen (out of the collector's sight) and collection resumes."""
    env = at_dlrun_exit(tmp_path, (
        "import gc, json\n"
        "seen = {'during_start': 0, 'after': 0, 'frozen': 0}\n"
        "def cb(phase, info):\n"
        "    if phase != 'stop' or 'torch' not in sys.modules: return\n"
        "    seen['frozen'] = max(seen['frozen'], gc.get_freeze_count())\n"  # unfrozen again at exit
        "    seen['during_start' if seen['frozen'] == 0 else 'after'] += 1\n"
        "gc.callbacks.append(cb)\n"), "json.dumps(seen)")
    proc = run_dlrun("logger=quiet", "trainer.epochs=2", f"hydra.run.dir={tmp_path / 'run'}", env=env)
    assert proc.returncode == 0, proc.stderr
    seen = read_json(tmp_path / "out.txt")
    assert seen["during_start"] == 0 and seen["after"] > 0 and seen["frozen"] > 100_000, seen


def test_shell_completion_answers_without_torch():
    """Hydra's bash completion (`eval "$(dlrun -sc install=bash)"`) runs dlrun on every Tab press."""
    assert "hydra_bash_completion" in run_dlrun("-sc", "install=bash").stdout
    code = ("import sys; from dlrun import cli\n"
            "sys.argv = ['dlrun', '-sc', 'query=bash']\n"
            "try: cli.main()\n"
            "except SystemExit as e: assert not e.code, e.code\n"
            "print('TORCH', 'torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "COMP_LINE": "dlrun model=res"})
    assert proc.returncode == 0, proc.stderr
    assert "model=resnet" in proc.stdout.split() and "TORCH False" in proc.stdout


@pytest.mark.parametrize("args,code,fragments", [
    (["model=resnt"], 2, ["unknown model 'resnt'. Did you mean 'resnet'", "Available model options: airbench, autoencoder, charlm, cnn, cnn_seed2x"]),
    (["model=mpl"], 2, ["Did you mean 'mlp'?"]),
    (["trainer.epoch=3"], 2, ["unknown key 'trainer.epoch'. Did you mean 'epochs'"]),
    (["trainer.epochs=abc"], 2, ["trainer.epochs='abc' is not allowed: a positive integer"]),
    (["optimizer.lr=-1"], 2, ["optimizer.lr=-1 is not allowed"]),
    (["list", "modles"], 2, ["Did you mean 'models'"]),
    (["dataset=synthetic", "dataset.kind=moon"], 2, ["dataset.kind='moon' is not allowed", "Did you mean 'moons'?"]),
    (["device=cuda:0"], 2, ["no CUDA GPU"]),
])
def test_bad_input_gets_a_clear_message_and_exit_code(args, code, fragments, run_dir):
    if args == ["device=cuda:0"]:
        import torch
        if torch.cuda.is_available():
            pytest.skip("this machine has a GPU, so device=cuda:0 is valid here")
    proc = run_dlrun(*args, f"hydra.run.dir={run_dir}") if args[0] != "list" else run_dlrun(*args)
    assert_clean_error(proc, code, *fragments)
    assert not (run_dir / "checkpoints").exists()


def test_offline_torchvision_datasets_say_where_to_put_the_files(tmp_path):
    proc = run_dlrun("dataset=mnist", f"dataset.root={tmp_path}", "debug=smoke", f"hydra.run.dir={tmp_path / 'r'}")
    if proc.returncode == 0:
        pytest.skip("this machine is online: MNIST downloaded")
    assert_clean_error(proc, 3, f"{tmp_path}/MNIST/raw", "train-images-idx3-ubyte.gz", "dataset.root")
    proc = run_dlrun("dataset=cifar10", f"dataset.root={tmp_path}", "debug=smoke", f"hydra.run.dir={tmp_path / 'c'}")
    assert_clean_error(proc, 3, "cifar-10-python.tar.gz", str(tmp_path))


@pytest.mark.skipif(not FASHION.exists(), reason="needs Debian's dataset-fashion-mnist (CI installs it)")
def test_fashion_mnist_from_the_debian_package(tmp_path):
    proc = run_dlrun("dataset=fashion_mnist", f"dataset.root={tmp_path / 'data'}", "debug=smoke",
                     f"hydra.run.dir={tmp_path / 'r'}")
    assert proc.returncode == 0, proc.stderr
    s = read_json(tmp_path / "r" / "summary.json")
    assert (s["n_train"], s["n_val"], s["n_test"]) == (54000, 6000, 10000)
    assert s["params"] == 784 * 256 + 256 + 256 * 128 + 128 + 1290


@pytest.mark.slow
@pytest.mark.skipif(not FASHION.exists(), reason="needs Debian's dataset-fashion-mnist (CI installs it)")
def test_fashion_mnist_mlp_reaches_the_benchmark_range(tmp_path):
    proc = run_dlrun("dataset=fashion_mnist", "trainer.epochs=10", "trainer.batch_size=128",
                     f"hydra.run.dir={tmp_path / 'r'}", timeout=900)
    assert proc.returncode == 0, proc.stderr
    assert read_json(tmp_path / "r" / "summary.json")["test_accuracy"] >= 0.87  # benchmark MLP: 0.883
