"""`pip install .` as a wheel, not editable: the configs travel inside the package (issue 14, item 1)."""
import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from conftest import ROOT, read_json


def test_a_wheel_installed_elsewhere_has_its_configs_and_trains(tmp_path):
    """Build the wheel, install it into a fresh venv (no dependencies: those of this venv are put on its path
    by a .pth file, so torch is not installed again), and run `dlrun debug=smoke` outside the repository."""
    offline = ["--no-build-isolation"] if importlib.util.find_spec("setuptools") else []  # else from PyPI
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "TMPDIR": str(tmp_path)}
    source = tmp_path / "source"  # a clean copy: no build/ left over from an earlier build of the checkout
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", ".venv", "build", "outputs", "multirun",
                                                                 "*.egg-info", "__pycache__", "experiments"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", *offline,
                    "-w", str(tmp_path / "dist"), str(source)], check=True, env=env, cwd=tmp_path)
    wheel = next((tmp_path / "dist").glob("dlrun-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q",
                    "--no-deps", str(wheel)], check=True, env=env)
    site = Path(subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "test_venv.pth").write_text(sysconfig.get_path("purelib") + "\n")  # torch, hydra, ... of this venv

    run_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HYDRA_FULL_ERROR")}
    run_env.update(CI="1", OMP_NUM_THREADS="1")
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import dlrun.config as c; print(c.__file__, c.CONF_DIR)"],
                           capture_output=True, text=True, cwd=tmp_path, env=run_env)
    module, conf = where.stdout.split()
    assert module.startswith(str(site)) and conf == str(site / "dlrun" / "conf"), where.stdout  # not the checkout
    proc = subprocess.run([str(venv / "bin" / "dlrun"), "debug=smoke", "logger=quiet", f"hydra.run.dir={tmp_path / 'run'}"],
                          capture_output=True, text=True, cwd=tmp_path, env=run_env, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert read_json(tmp_path / "run" / "summary.json")["status"] == "completed"
    report = subprocess.run([str(venv / "bin" / "dlrun"), "report", str(tmp_path / "run")], capture_output=True,
                            text=True, cwd=tmp_path, env=run_env)
    assert report.returncode == 0, report.stdout + report.stderr
    listing = subprocess.run([str(venv / "bin" / "dlrun"), "list", "experiments"], capture_output=True, text=True,
                             cwd=tmp_path, env=run_env)
    assert "digits_cnn" in listing.stdout and "airbench_cifar10" in listing.stdout, listing.stdout + listing.stderr
    sweeper = subprocess.run([str(venv / "bin" / "dlrun"), "--cfg", "hydra", "hparams_search=digits_optuna"],
                             capture_output=True, text=True, cwd=tmp_path, env=run_env)
    assert "DlrunOptunaSweeper" in sweeper.stdout, sweeper.stderr  # hydra_plugins shipped too
