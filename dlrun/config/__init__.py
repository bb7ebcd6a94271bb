"""Composing and checking configs (torch-free): the search path, the schemas, overrides, resume.

`compose` and `validate` are handed on lazily, so that importing `dlrun.config.search` (for `dlrun list`,
`--help`) does not import Hydra. Importing the package registers the resolver of hydra.sweep.subdir."""
from dlrun.config.search import CONF_DIR, GROUPS, config_folders, describe_options, group_options
from dlrun.sweep import folders as _folders  # noqa: F401  registers ${dlrun_job_dir:}, hydra.sweep.subdir's resolver

__all__ = ["CONF_DIR", "GROUPS", "check_overrides", "compose", "config_folders", "describe_options", "group_options",
           "validate", "validate_hydra"]


def __getattr__(name):
    if name in ("check_overrides", "compose"):
        from dlrun.config import composition as module
    elif name in ("validate", "validate_hydra"):
        from dlrun.config import validation as module
    else:
        raise AttributeError(name)
    return getattr(module, name)
