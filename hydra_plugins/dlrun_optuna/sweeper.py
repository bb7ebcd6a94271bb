"""A Hydra sweeper that searches hyperparameters with a current Optuna and a persistent study.

The study lives in SWEEP_DIR/optuna.db (SQLite, study name `dlrun`): re-running the same command with the
same `hydra.sweep.dir` continues the search, `n_trials` being the study's total. Trials a stopped search
left running are marked failed and queued again with the same parameters, so their jobs resume from their
checkpoints. After each trial SWEEP_DIR/best.yaml holds the best trial's overrides and its command line.

The search space is `params` in the sweeper's config plus any sweep override on the command line, in
Hydra's override syntax:
    optimizer.lr: tag(log, interval(1e-4, 1e-1))   a float (log scale); tag(int, interval(1, 8)): an integer
    trainer.batch_size: choice(32, 64, 128)         a categorical; range(1, 5) likewise
    trainer.epochs: 10                              a value every trial uses
Optuna is imported only when a search starts: Hydra imports this module whenever it looks for plugins.
"""
from __future__ import annotations

import json
import logging
import math
import shlex
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from dlrun.errors import DlrunError, did_you_mean

log = logging.getLogger(__name__)
STUDY_FILE, BEST_FILE = "optuna.db", "best.yaml"
SAMPLERS = ("tpe", "random")


def _key(o: Override) -> str:
    return ("++" if o.is_force_add() else "+" if o.is_add() else "") + o.get_key_element()


def _format(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def trial_metric(summary: dict | None, metric: str, direction: str) -> float | None:
    """What a job scores: for an epoch metric (val_loss, val_accuracy, ...) its best value over the epochs,
    otherwise the summary's value (test_accuracy, wall_time, ...). None unless the job completed."""
    if not isinstance(summary, dict) or summary.get("status") != "completed":
        return None
    rows = []
    path = Path(str(summary.get("run_dir", ""))) / "metrics.jsonl"
    if path.is_file():
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    values = [r[metric] for r in rows if isinstance(r.get(metric), (int, float))]
    if values:
        value = min(values) if direction == "minimize" else max(values)
    else:
        value = summary.get(metric)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        known = sorted({k for r in rows for k in r} | {k for k, v in summary.items()
                                                       if isinstance(v, (int, float)) and not isinstance(v, bool)})
        raise DlrunError(f"the search's metric '{metric}' is not in the job's metrics or summary "
                         f"({summary.get('run_dir')}).{did_you_mean(metric, known)} Choose one of: {', '.join(known)}")
    return float(value) if math.isfinite(value) else None


class DlrunOptunaSweeper(Sweeper):
    """Asks Optuna for parameters, launches one dlrun job per trial, tells Optuna the job's metric."""

    def __init__(self, metric: str = "val_loss", direction: str = "minimize", n_trials: int = 20, n_jobs: int = 1,
                 study_name: str = "dlrun", storage: str | None = None, sampler: str = "tpe", seed: int = 0,
                 params: Any = None):
        self.metric, self.direction, self.n_trials, self.n_jobs = metric, direction, n_trials, n_jobs
        self.study_name, self.storage, self.sampler, self.seed = study_name, storage, sampler, seed
        self.params = OmegaConf.to_container(params, resolve=True) if OmegaConf.is_config(params) else dict(params or {})

    def _check(self) -> None:
        problems = []
        if self.direction not in ("minimize", "maximize"):
            problems.append(f"direction={self.direction!r}: minimize or maximize")
        for name in ("n_trials", "n_jobs"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                problems.append(f"{name}={v!r}: a positive integer")
        if self.sampler not in SAMPLERS:
            problems.append(f"sampler={self.sampler!r}: one of {', '.join(SAMPLERS)}")
        if problems:
            raise DlrunError("invalid hydra.sweeper settings:\n  " + "\n  ".join(problems))

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)

    # ---- the search space ------------------------------------------------------------------------
    def _space(self, arguments: list[str]) -> tuple[list[str], list[tuple[str, Any]]]:
        """(overrides every trial shares, [(key, sweep), ...]) from `params` and the command line, which
        wins for a key in both (`optimizer.lr=0.01` fixes a searched parameter)."""
        lines = [f"{k}={v}" for k, v in self.params.items()] + list(arguments)
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        by_key: dict[str, Override] = {}
        for o in parser.parse_overrides(lines):
            if o.is_sweep_override() and not isinstance(o.value(), (ChoiceSweep, RangeSweep, IntervalSweep)):
                raise DlrunError(f"the Optuna search cannot use '{o.input_line}': "
                                 "give choice(...), range(...) or interval(...)")
            by_key.pop(_key(o), None)
            by_key[_key(o)] = o
        fixed = [o.input_line for o in by_key.values() if not o.is_sweep_override()]
        space = {k: o for k, o in by_key.items() if o.is_sweep_override()}
        if not space:
            raise DlrunError("the Optuna search has no parameters: set hydra.sweeper.params "
                             "(e.g. in conf/hparams_search/) or give a sweep such as optimizer.lr=interval(1e-4,1e-1)")
        return fixed, list(space.items())

    @staticmethod
    def _suggest(trial, key: str, o: Override) -> str:
        sweep = o.value()
        if isinstance(sweep, IntervalSweep):
            log_scale = "log" in sweep.tags
            if "int" in sweep.tags:
                value = trial.suggest_int(key, int(sweep.start), int(sweep.end), log=log_scale)
            else:
                value = trial.suggest_float(key, float(sweep.start), float(sweep.end), log=log_scale)
            return f"{key}={_format(value)}"
        return f"{key}={trial.suggest_categorical(key, list(o.sweep_string_iterator()))}"

    # ---- the search ------------------------------------------------------------------------------
    def _sampler(self, n_before: int):
        import optuna

        seed = self.seed + n_before  # a resumed search must not replay the first run's random draws
        return optuna.samplers.TPESampler(seed=seed) if self.sampler == "tpe" else optuna.samplers.RandomSampler(seed=seed)

    def _study(self, sweep_dir: Path):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        storage = self.storage or f"sqlite:///{(sweep_dir / STUDY_FILE).resolve()}"
        study = optuna.create_study(storage=storage, study_name=self.study_name, direction=self.direction,
                                    load_if_exists=True)
        if study.direction.name.lower() != self.direction:
            raise DlrunError(f"study '{self.study_name}' in {storage} was created to "
                             f"{study.direction.name.lower()}; it cannot {self.direction} now")
        known = study.user_attrs.get("metric")  # set once a trial has scored
        if known is not None and known != self.metric:
            raise DlrunError(f"study '{self.study_name}' in {storage} optimises '{known}', not '{self.metric}'; "
                             "use another hydra.sweep.dir for a new search")
        running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        for t in running:  # left by a search that was stopped: run them again (their jobs resume)
            study.tell(t.number, state=optuna.trial.TrialState.FAIL)
            study.enqueue_trial(t.params, user_attrs={"retry_of": t.number})
        if running:
            log.info(f"Optuna: {len(running)} trial(s) of the stopped search queued again")
        study.sampler = self._sampler(len(study.trials))
        return study

    @staticmethod
    def _counted(study) -> int:
        """Trials that count towards n_trials: completed ones and failed jobs (not interrupted trials)."""
        from optuna.trial import TrialState

        return sum(t.state == TrialState.COMPLETE or (t.state == TrialState.FAIL and "status" in t.user_attrs)
                   for t in study.get_trials(deepcopy=False))

    def _summary(self, r: JobReturn) -> dict | None:
        if r.status != JobStatus.COMPLETED:
            log.warning(f"Optuna: job {' '.join(r.overrides)} raised {r._return_value!r}")
            return None
        if isinstance(r.return_value, dict):
            return r.return_value
        path = Path(str(r.hydra_cfg.hydra.runtime.output_dir)) / "summary.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def sweep(self, arguments: list[str]) -> list[JobReturn]:
        """Run trials until the study holds n_trials; a DlrunError ends the search with its message (exit 2)."""
        try:
            return self._search(arguments)
        except DlrunError as exc:
            from dlrun.errors import print_error

            print_error(str(exc))
            raise SystemExit(exc.exit_code) from None  # past Hydra's reporting, which prints a traceback

    def _search(self, arguments: list[str]) -> list[JobReturn]:
        from optuna.trial import TrialState

        self._check()
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        fixed, space = self._space(arguments)
        study = self._study(sweep_dir)
        done = self._counted(study)
        log.info(f"Optuna: study '{self.study_name}' in {sweep_dir / STUDY_FILE}: {done} trial(s) done, "
                 f"{max(self.n_trials - done, 0)} to go; {self.direction} {self.metric}")
        returns: list[JobReturn] = []
        while (left := self.n_trials - self._counted(study)) > 0:
            trials = [study.ask() for _ in range(min(self.n_jobs, left))]
            batch = [fixed + [self._suggest(t, key, o) for key, o in space] for t in trials]
            for t, overrides in zip(trials, batch):
                t.set_user_attr("overrides", overrides)
            self.validate_batch_is_legal(batch)
            # On an interrupt the trials stay RUNNING in the study; the next launch queues them again.
            results = self.launcher.launch(batch, initial_job_idx=trials[0].number)
            for t, r in zip(trials, results):
                summary = self._summary(r)
                try:
                    value = trial_metric(summary, self.metric, self.direction)
                except DlrunError:  # a metric no job has: stop the search, uncounted
                    study.tell(t, state=TrialState.FAIL)
                    raise
                t.set_user_attr("status", (summary or {}).get("status", "failed"))
                if summary and summary.get("run_dir"):
                    t.set_user_attr("run_dir", str(summary["run_dir"]))
                if value is None:
                    study.tell(t, state=TrialState.FAIL)
                    log.info(f"Optuna: trial {t.number} failed (no finite {self.metric})")
                else:
                    study.tell(t, value)
                    study.set_user_attr("metric", self.metric)
                    best = study.best_trial
                    log.info(f"Optuna: trial {t.number}: {self.metric}={value:.6g} "
                             f"(best {best.value:.6g}, trial {best.number})")
            returns.extend(results)
            self._write_best(study, sweep_dir)
        self._write_best(study, sweep_dir)
        return returns

    def _write_best(self, study, sweep_dir: Path) -> None:
        """SWEEP_DIR/best.yaml: the best trial's value, overrides, folder and the command that runs it again."""
        from optuna.trial import TrialState

        if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            return
        best = study.best_trial
        overrides = list(best.user_attrs.get("overrides", []))
        command = "dlrun " + " ".join(shlex.quote(o) for o in overrides)
        node = {"metric": self.metric, "direction": self.direction, "value": best.value, "trial": best.number,
                "n_trials": self._counted(study), "run_dir": best.user_attrs.get("run_dir"),
                "params": dict(best.params), "overrides": overrides, "command": command}
        header = (f"# The best trial of the Optuna search in {sweep_dir} (study '{self.study_name}').\n"
                  f"# Run it again: {command}\n")
        tmp = sweep_dir / f".{BEST_FILE}.tmp"
        tmp.write_text(header + OmegaConf.to_yaml(OmegaConf.create(node)))
        tmp.replace(sweep_dir / BEST_FILE)
