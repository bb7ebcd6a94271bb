"""The registry: names, wildcards, case-insensitivity, suggestions, and the torch-free listing."""
from pathlib import Path

import pytest

from dlrun.errors import DlrunError
from dlrun.registry import DATASETS, MODELS, OPTIMIZERS, REGISTRIES, Registry, create_model, list_models


def test_builtin_models_and_wildcards():
    assert {"perceptron", "mlp", "cnn"} <= set(list_models())
    assert list_models("m*") == ["mlp"]
    assert list_models("*p*") == ["graph", "inception", "mlp", "perceptron"]


def test_lookup_is_case_insensitive_and_builds_a_working_model():
    import torch

    model = create_model("CNN", input_shape=(1, 8, 8), num_outputs=10)
    assert model(torch.zeros(4, 1, 8, 8)).shape == (4, 10)
    assert MODELS.get("Mlp") is MODELS.get("mlp")


def test_unknown_name_suggests_the_closest():
    with pytest.raises(DlrunError) as err:
        MODELS.get("mpl")
    assert "Did you mean 'mlp'?" in str(err.value)
    assert "cnn" in str(err.value) and "perceptron" in str(err.value)


def test_bad_model_argument_is_a_clear_error():
    with pytest.raises(DlrunError, match="model 'mlp' could not be built.*widht"):
        create_model("mlp", input_shape=(4,), num_outputs=2, widht=3)


def test_register_and_duplicate():
    reg = Registry("thing")

    @reg.register("Foo")
    def foo():
        """The foo thing."""

    assert reg.names() == ["foo"] and reg.entry("FOO").description == "The foo thing."
    with pytest.raises(DlrunError, match="registered twice"):
        reg.register("foo")(lambda: None)


def test_the_config_options_and_the_live_registry_agree():
    """`dlrun list` reads the config groups (torch-free); every registered model and dataset has an option there,
    and every option names a registered one."""
    import yaml

    from dlrun.config import CONF_DIR

    for group, registry in (("model", MODELS), ("dataset", DATASETS)):
        named = {yaml.safe_load(p.read_text())["name"] for p in Path(CONF_DIR, group).glob("*.yaml")}
        assert named == set(registry.names()), group
    for kind, registry in REGISTRIES.items():
        assert all(registry.entry(name).description for name in registry.names()), kind


def test_datasets_and_optimizers_registered():
    assert {"digits", "synthetic", "fashion_mnist", "mnist", "cifar10"} <= set(DATASETS.names())
    assert {"sgd", "adam", "adamw", "adagrad", "adadelta", "rmsprop"} <= set(OPTIMIZERS.names())
