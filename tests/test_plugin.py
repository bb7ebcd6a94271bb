"""A third-party package adds a model through the `dlrun.models` entry point."""
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import read_json, run_dlrun

PLUGIN = Path(__file__).parent / "plugin_pkg"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """pip-install the plugin package into a folder of its own (the venv stays untouched)."""
    target = tmp_path_factory.mktemp("site")
    build = tmp_path_factory.mktemp("build")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(target), str(PLUGIN)], check=True,
                   env={"PIP_CACHE_DIR": str(build), "PATH": "/usr/bin:/bin", "TMPDIR": str(build)})
    return target


def test_plugin_model_trains_from_the_cli_by_name(site, tmp_path):
    env = {"PYTHONPATH": str(site)}
    listing = run_dlrun("list", "models", env=env)
    assert "tiny" in listing.stdout and "plugin from dlrun-tiny" in listing.stdout

    proc = run_dlrun("model=tiny", "+model.width=16", "trainer.epochs=10", f"hydra.run.dir={tmp_path / 'r'}", env=env)
    assert proc.returncode == 0, proc.stderr
    summary = read_json(tmp_path / "r" / "summary.json")
    assert summary["model"] == "tiny"
    assert summary["params"] == 64 * 16 + 16 + 16 * 10 + 10  # width=16 reached the plugin
    assert summary["test_accuracy"] > 0.85
    # the broken plugin is skipped with a warning and breaks nothing
    assert "skipping model plugin 'broken'" in proc.stderr and "not installed" in proc.stderr


def test_without_the_plugin_the_name_is_unknown(tmp_path):
    proc = run_dlrun("model=tiny", f"hydra.run.dir={tmp_path / 'r'}")
    assert proc.returncode == 2 and "unknown model 'tiny'" in proc.stderr


def test_plugins_are_in_every_check_listing_and_suggestion(site, tmp_path):
    """Issue 14, item 4: a plugin's option is suggested, listed with its docstring (read, not imported), shown
    in --help; a plugin named like a built-in is ignored with a warning."""
    env = {"PYTHONPATH": str(site)}
    proc = run_dlrun("model=widnet", f"hydra.run.dir={tmp_path / 'r'}", env=env)
    assert proc.returncode == 2 and "unknown model 'widnet'. Did you mean 'widenet'" in proc.stderr, proc.stderr
    assert "widenet" in proc.stderr.split("Available model options:")[1]
    listing = run_dlrun("list", "models", env=env)
    lines = {ln.split()[0]: ln.split(maxsplit=1)[1] for ln in listing.stdout.splitlines()}
    assert lines["widenet"] == "Wide plugin net: one hidden layer of `width` ReLU units."
    assert lines["tiny"] == "Tiny plugin net: one hidden layer of `width` tanh units."
    assert lines["mlp"].startswith("Multi-layer perceptron")  # the built-in, not the plugin
    assert "warning: ignoring the model plugin 'mlp' (dlrun_tiny:tiny, from dlrun-tiny): dlrun has a built-in model" \
        in listing.stderr
    assert "widenet" in run_dlrun("--help", env=env).stdout.split("model:")[1].splitlines()[0]
    proc = run_dlrun("model=widenet", "+model.width=8", "debug=smoke", f"hydra.run.dir={tmp_path / 'w'}", env=env)
    assert proc.returncode == 0, proc.stderr
    assert read_json(tmp_path / "w" / "summary.json")["params"] == 64 * 8 + 8 + 8 * 10 + 10
