"""The `dlrun` command line (the console script is `dlrun.cli.main:entry`)."""
from dlrun.cli.main import entry, main

__all__ = ["entry", "main"]
