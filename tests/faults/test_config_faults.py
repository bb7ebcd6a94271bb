"""Bad configs are refused before any work, with the key, the value and what is allowed; no traceback."""
import pytest
from hydra import compose, initialize_config_dir

from conftest import assert_clean_error, run_dlrun
from dlrun.config import CONF_DIR, GROUPS, group_options, validate


def refused(run_dir, *args: str, env: dict | None = None):
    """`dlrun ARGS` into run_dir; the run must not have started (no folder: nothing loaded, no checkpoint)."""
    proc = run_dlrun(*args, f"hydra.run.dir={run_dir}", env=env)
    assert not run_dir.exists(), proc.stdout + proc.stderr
    return proc


def test_out_of_range_values_are_refused_before_any_data_is_loaded(tmp_path, run_dir):
    # MNIST is not in tmp_path: had data been loaded first, this would be the missing-data error (exit 3)
    proc = refused(run_dir, "optimizer.lr=-1", "trainer.batch_size=0", "model.dropout=1.5", "trainer.clip_value=-1",
                   "trainer.checkpoint_every_steps=0", "dataset=mnist", f"dataset.root={tmp_path}",
                   "dataset.download=false")
    assert_clean_error(proc, 2, "optimizer.lr=-1 is not allowed: a number > 0",
                       "trainer.batch_size=0 is not allowed: a positive integer or 'full'",
                       "model.dropout=1.5 is not allowed: a number in [0, 1)",
                       "trainer.clip_value=-1 is not allowed: null or a number > 0",
                       "trainer.checkpoint_every_steps=0 is not allowed: null or a positive integer")


def test_typos_and_wrong_types_get_a_suggestion(run_dir):
    assert_clean_error(refused(run_dir, "optimizer.lrr=0.1"), 2, "unknown key 'optimizer.lrr'. Did you mean 'lr'?")
    assert_clean_error(refused(run_dir, "trainer.epochs=abc", "trainer.on_nonfinite=skp"), 2,
                       "trainer.epochs='abc' is not allowed: a positive integer",
                       "trainer.on_nonfinite='skp' is not allowed: stop or skip. Did you mean 'skip'")


def test_wrong_types_in_every_group_are_refused(run_dir):
    proc = refused(run_dir, "trainer.log_every=abc", "optimizer.betas=[0.9]", "dataset.in_memory=maybe",
                   "trainer.precision=fp8", "trainer.compile=1", "trainer.early_stopping.patience=0",
                   "scheduler=step", "scheduler.step_size=1.5", "loss=cross_entropy", "loss.label_smoothing=1",
                   "logger.console=yes", "model.norm=group", "seed=1.5", "sweep.on_failure=halt")
    assert_clean_error(proc, 2, "trainer.log_every='abc' is not allowed: a positive integer",
                       "optimizer.betas=[0.9] is not allowed: two numbers in [0, 1)",
                       "dataset.in_memory='maybe' is not allowed: true or false",
                       "trainer.precision='fp8' is not allowed: 32, bf16 or fp16. Did you mean 'fp16'",
                       "trainer.compile=1 is not allowed: true or false",
                       "trainer.early_stopping.patience=0 is not allowed: null (off) or a positive integer",
                       "scheduler.step_size=1.5 is not allowed: a positive integer",
                       "loss.label_smoothing=1 is not allowed: a number in [0, 1)",
                       "logger.console='yes' is not allowed: true or false",
                       "model.norm='group' is not allowed: none, batch or layer",
                       "seed=1.5 is not allowed: an integer",
                       "sweep.on_failure='halt' is not allowed: continue or stop")


@pytest.mark.parametrize("how", ["--config-dir", "hydra.searchpath"])
def test_a_typo_in_a_config_file_gets_a_suggestion(tmp_path, run_dir, how):
    conf = tmp_path / "conf"
    (conf / "experiment").mkdir(parents=True)
    (conf / "experiment" / "mine.yaml").write_text(
        "# @package _global_\ntrainer:\n  epoch: 3\noptimizer:\n  weight_decy: 0.1\n")
    where = ["-cd", str(conf)] if how == "--config-dir" else [f"hydra.searchpath=[file://{conf}]"]
    proc = refused(run_dir, *where, "experiment=mine")
    assert_clean_error(proc, 2, "unknown key 'trainer.epoch'. Did you mean 'epochs'",
                       "unknown key 'optimizer.weight_decy'. Did you mean 'weight_decay'")


def test_keys_added_on_purpose_and_integer_precision_are_accepted():
    proc = run_dlrun("--cfg", "job", "+optimizer.amsgrad=true", "trainer.precision=32", "+model.width=3")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "amsgrad: true" in proc.stdout and "precision: 32" in proc.stdout


def test_hydra_full_error_shows_the_traceback(run_dir):
    assert_clean_error(refused(run_dir, "optimizer.lr=-1"), 2, "optimizer.lr=-1 is not allowed")
    proc = refused(run_dir, "optimizer.lr=-1", env={"HYDRA_FULL_ERROR": "1"})
    assert proc.returncode == 2
    assert "Traceback" in proc.stderr and "optimizer.lr=-1 is not allowed: a number > 0" in proc.stderr


def test_a_target_in_a_user_config_is_refused(run_dir):
    proc = refused(run_dir, "+optimizer._target_=os.system")
    assert_clean_error(proc, 2, "optimizer._target_='os.system' is not allowed",
                       "dlrun never instantiates a class named in a config")


def test_every_option_of_every_group_fits_the_schemas():
    """Each conf/GROUP/OPTION.yaml composes and validates, unknown keys included: the schemas have not drifted."""
    options = [f"{g}={o}" for g in GROUPS for o in group_options(g)]
    assert len(options) > 40
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        for option in options:
            validate(compose("config", overrides=[option]), added=())


@pytest.mark.parametrize("seed", ["-1", "1e20", "4294967296"])
def test_a_seed_out_of_range_is_refused(run_dir, seed):
    """Case 15: numpy and torch take seeds in [0, 2**32); anything else is a config error, not a ValueError."""
    assert_clean_error(refused(run_dir, f"seed={seed}"), 2, "seed=", "is not allowed: an integer in [0, 2**32)")


def test_odd_values_in_configs_are_one_line_errors(tmp_path, run_dir):
    """Case 17: a Python tag in a user's YAML (never constructed), a list of words for layer widths, a
    deleted key the run needs."""
    marker = tmp_path / "pwned"
    conf = tmp_path / "conf" / "experiment"
    conf.mkdir(parents=True)
    (conf / "tagged.yaml").write_text(f"# @package _global_\nseed: !!python/object/apply:os.system ['touch {marker}']\n")
    assert_clean_error(refused(run_dir, "-cd", str(tmp_path / "conf"), "experiment=tagged"), 2,
                       "the config could not be composed")
    assert not marker.exists()
    assert_clean_error(refused(run_dir, "model.hidden=[a,b]", "debug=smoke"), 2,
                       "model 'mlp' could not be built", "invalid literal for int()")
    assert_clean_error(refused(run_dir, "~trainer.epochs"), 2,
                       "trainer.epochs is missing (a positive integer); a run needs it")
