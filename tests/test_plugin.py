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
