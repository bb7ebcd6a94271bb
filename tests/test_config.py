"""Config composition and validation, through Hydra's compose API (no training)."""
import pytest
from hydra import compose, initialize_config_dir

from dlrun.config import CONF_DIR, check_overrides, validate
from dlrun.errors import DlrunError


def cfg(*overrides):
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        return compose("config", overrides=list(overrides))


def test_defaults():
    c = cfg()
    assert (c.model.name, c.optimizer.name, c.dataset.name, c.device) == ("mlp", "adam", "digits", "auto")
    assert c.trainer.early_stopping.patience is None  # early stopping is opt-in


def test_groups_compose():
    c = cfg("model=cnn", "optimizer=nesterov", "scheduler=cosine", "model.hidden=[32]", "trainer.batch_size=full")
    assert c.model.channels == [6, 16] and c.model.hidden == [32]
    assert c.optimizer.name == "sgd" and c.optimizer.nesterov is True
    assert c.trainer.batch_size == "full"


def test_debug_smoke_and_experiment():
    assert cfg("debug=smoke").trainer.limit_batches == 2
    c = cfg("experiment=digits_cnn")
    assert c.model.name == "cnn" and c.scheduler.name == "cosine" and c.trainer.epochs == 15


@pytest.mark.parametrize("override,fragment", [
    ("trainer.epochs=0", "trainer.epochs=0 is not allowed: a positive integer"),
    ("trainer.batch_size=-3", "trainer.batch_size=-3"),
    ("trainer.batch_size=half", "a positive integer or 'full'"),
    ("optimizer.lr=-1", "optimizer.lr=-1 is not allowed: a number > 0"),
    ("model.dropout=1.5", "model.dropout=1.5 is not allowed: a number in [0, 1)"),
])
def test_values_out_of_range_are_rejected(override, fragment):
    with pytest.raises(DlrunError) as err:
        validate(cfg(override))
    assert fragment in str(err.value)


def test_typo_suggestions_for_keys_and_options():
    with pytest.raises(DlrunError, match="unknown key 'optimizer.lrr'. Did you mean 'lr'"):
        check_overrides(["optimizer.lrr=0.1"])
    with pytest.raises(DlrunError, match="unknown scheduler 'cosin'. Did you mean 'cosine'"):
        check_overrides(["scheduler=cosin"])
    check_overrides(["optimizer=sgd,adam", "optimizer.lr=0.1,0.01"])  # a sweep checks its first job
