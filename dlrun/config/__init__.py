"""Composing and checking configs (torch-free): the search path, the schemas, overrides, resume."""
from dlrun.config.compose import check_overrides, compose
from dlrun.config.search import CONF_DIR, GROUPS, config_folders, describe_options, group_options
from dlrun.config.validate import validate, validate_hydra

__all__ = ["CONF_DIR", "GROUPS", "check_overrides", "compose", "config_folders", "describe_options", "group_options",
           "validate", "validate_hydra"]
