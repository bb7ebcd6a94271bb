"""Bad configs are refused before any work, with the key, the value and what is allowed; no traceback."""
from conftest import assert_clean_error, run_dlrun


def test_out_of_range_values_are_refused_before_any_data_is_loaded(tmp_path):
    # MNIST is not in tmp_path: had data been loaded first, this would be the missing-data error (exit 3)
    proc = run_dlrun("optimizer.lr=-1", "trainer.batch_size=0", "model.dropout=1.5", "trainer.clip_value=-1",
                     "trainer.checkpoint_every_steps=0", "dataset=mnist", f"dataset.root={tmp_path}",
                     "dataset.download=false")
    assert_clean_error(proc, 2, "optimizer.lr=-1 is not allowed: a number > 0",
                       "trainer.batch_size=0 is not allowed: a positive integer or 'full'",
                       "model.dropout=1.5 is not allowed: a number in [0, 1)",
                       "trainer.clip_value=-1 is not allowed: null or a number > 0",
                       "trainer.checkpoint_every_steps=0 is not allowed: null or a positive integer")


def test_typos_and_wrong_types_get_a_suggestion():
    assert_clean_error(run_dlrun("optimizer.lrr=0.1"), 2, "unknown key 'optimizer.lrr'. Did you mean 'lr'?")
    assert_clean_error(run_dlrun("trainer.epochs=abc", "trainer.on_nonfinite=skp"), 2,
                       "trainer.epochs='abc' is not allowed: a positive integer",
                       "trainer.on_nonfinite='skp' is not allowed: stop or skip. Did you mean 'skip'")


def test_a_target_in_a_user_config_is_refused():
    proc = run_dlrun("+optimizer._target_=os.system")
    assert_clean_error(proc, 2, "optimizer._target_='os.system' is not allowed",
                       "dlrun never instantiates a class named in a config")
