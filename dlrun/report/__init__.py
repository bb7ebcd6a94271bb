"""`dlrun report`: reading run folders, tables that fit, plots. Never imports torch."""
from dlrun.report.make import report
from dlrun.report.runs import find_runs, load_run

__all__ = ["find_runs", "load_run", "report"]
