"""What a new user types in the first hour: -cd folders, `dlrun list`, --version, --help, mistyped commands,
Tab completion. Each answer comes from the same search path that the run uses."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, assert_clean_error, read_json, run_dlrun
from dlrun.config import CONF_DIR, GROUPS


@pytest.fixture
def myconf(tmp_path) -> Path:
    """A user's config folder: a model preset and an experiment."""
    conf = tmp_path / "myconf"
    (conf / "model").mkdir(parents=True)
    (conf / "experiment").mkdir()
    (conf / "model" / "mymlp.yaml").write_text("# My small MLP.\nname: mlp\nhidden: [16]\nactivation: tanh\n")
    (conf / "experiment" / "mine.yaml").write_text(
        "# @package _global_\n# My recipe: the small MLP for two epochs.\ndefaults:\n  - override /model: mymlp\n"
        "trainer:\n  epochs: 2\n")
    return conf


@pytest.mark.parametrize("cd", ["-cd DIR", "-cd=DIR", "--config-dir=DIR"])
def test_user_configs_are_in_every_check_and_suggestion(myconf, tmp_path, cd):
    flag = cd.replace("DIR", str(myconf)).split(" ")
    proc = run_dlrun(*flag, "model=mymlpp", f"hydra.run.dir={tmp_path / 'a'}")
    assert_clean_error(proc, 2, "unknown model 'mymlpp'. Did you mean 'mymlp'")
    assert "mymlp" in proc.stderr.split("Available model options:")[1]
    assert_clean_error(run_dlrun(*flag, "experiment=mien", f"hydra.run.dir={tmp_path / 'b'}"), 2,
                       "Did you mean 'mine'")
    proc = run_dlrun(*flag, "experiment=mine", "logger=quiet", f"hydra.run.dir={tmp_path / 'c'}")
    assert proc.returncode == 0, proc.stderr
    summary = read_json(tmp_path / "c" / "summary.json")
    assert summary["epochs_completed"] == 2 and summary["params"] == 64 * 16 + 16 + 16 * 10 + 10
    listing = run_dlrun("list", "experiments", *flag).stdout
    assert ["mine", "My recipe: the small MLP for two epochs."] in [ln.split(maxsplit=1) for ln in listing.splitlines()]
    assert "mymlp" in run_dlrun(*flag, "--help").stdout.split("model:")[1].splitlines()[0]


def test_list_prints_exactly_what_each_group_accepts():
    """Issue 14, item 5: every option of every group (their YAML files), with its first comment line."""
    everything = run_dlrun("list").stdout
    for group in GROUPS:
        options = sorted(p.stem for p in Path(CONF_DIR, group).glob("*.yaml"))
        assert options, group
        proc = run_dlrun("list", group)
        names = [line.split()[0] for line in proc.stdout.splitlines()]
        assert names == options, group
        assert all(len(line.split(maxsplit=1)) == 2 for line in proc.stdout.splitlines()), proc.stdout
        assert f"{group}:" in everything
    optimizers = run_dlrun("list", "optimizers").stdout
    assert {"gd", "momentum", "momentum_ema", "nesterov"} <= {ln.split()[0] for ln in optimizers.splitlines()}
    assert [ln.split()[0] for ln in run_dlrun("list", "loggers").stdout.splitlines()] == ["default", "quiet", "tensorboard"]
    assert [ln.split()[0] for ln in run_dlrun("list", "models", "cnn*").stdout.splitlines()] == \
        ["cnn", "cnn_seed2x", "cnn_seed3x"]


def test_version_help_and_a_mistyped_command():
    """Issue 14, item 8."""
    proc = run_dlrun("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("dlrun 0.1.0 (torch 2.14.1, Hydra 1.3"), proc.stdout
    help_page = run_dlrun("model=cnn", "--help")
    assert help_page.returncode == 0 and help_page.stdout.startswith("dlrun: train deep-learning models")
    assert_clean_error(run_dlrun("predictt"), 2, "unknown command 'predictt'. Did you mean 'predict'", "Commands: list, report, summary, predict, export")
    assert_clean_error(run_dlrun("lsit", "models"), 2, "unknown command 'lsit'. Did you mean 'list'?")
    assert_clean_error(run_dlrun("model=cnn", "extra"), 2, "unexpected argument 'extra'")


@pytest.mark.parametrize("line,expected,absent", [
    ("dlrun li", ["list"], []),
    ("dlrun list ", ["models", "optimizers", "experiments"], ["Error"]),
    ("dlrun list mo", ["models"], ["Error"]),
    ("dlrun report ", [], ["Error", "model="]),
    ("dlrun summary model=res", ["model=resnet"], ["Error"]),
    ("dlrun model=res", ["model=resnet"], []),
])
def test_tab_completion_knows_the_subcommands(line, expected, absent):
    """`eval "$(dlrun -sc install=bash)"` calls `dlrun -sc query=bash` with COMP_LINE at every Tab."""
    proc = subprocess.run([str(Path(sys.executable).with_name("dlrun")), "-sc", "query=bash"], capture_output=True,
                          text=True, cwd=ROOT, env={**os.environ, "COMP_LINE": line})
    assert proc.returncode == 0, proc.stderr
    words = proc.stdout.split()
    assert all(w in words for w in expected), proc.stdout
    assert not any(a in proc.stdout + proc.stderr for a in absent), proc.stdout + proc.stderr
