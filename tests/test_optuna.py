"""hparams_search=digits_optuna: our Optuna sweeper, its persistent SQLite study and best.yaml (real CLI runs)."""
from __future__ import annotations

import shlex

import pytest
import yaml

from conftest import assert_clean_error, read_json, run_dlrun

SEARCH = ["-m", "hparams_search=digits_optuna", "debug=smoke", "logger=quiet"]


def test_search_resumes_its_study_and_writes_the_best_trial(tmp_path):
    import optuna

    sweep = tmp_path / "search"
    first = run_dlrun(*SEARCH, "hydra.sweeper.n_trials=3", f"hydra.sweep.dir={sweep}")
    assert first.returncode == 0, first.stdout + first.stderr
    storage = f"sqlite:///{sweep / 'optuna.db'}"
    assert len(optuna.load_study(study_name="dlrun", storage=storage).trials) == 3

    again = run_dlrun(*SEARCH, "hydra.sweeper.n_trials=5", f"hydra.sweep.dir={sweep}")  # the study's total
    assert again.returncode == 0, again.stdout + again.stderr
    assert "3 trial(s) done, 2 to go" in again.stdout
    study = optuna.load_study(study_name="dlrun", storage=storage)
    assert [t.number for t in study.trials] == [0, 1, 2, 3, 4]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    assert len({tuple(sorted(t.params.items())) for t in study.trials}) == 5  # the resumed sampler draws anew
    for t in study.trials:  # each trial's value is its job's best val_loss
        history = [r["val_loss"] for r in map(yaml.safe_load, (sweep / str(t.number) / "metrics.jsonl").open())]
        assert t.value == pytest.approx(min(history))

    best = yaml.safe_load((sweep / "best.yaml").read_text())
    assert best["trial"] == study.best_trial.number and best["value"] == pytest.approx(study.best_value)
    assert best["command"] == "dlrun " + " ".join(shlex.quote(o) for o in best["overrides"])
    assert read_json(sweep / str(best["trial"]) / "summary.json")["status"] == "completed"
    composed = yaml.safe_load(run_dlrun("--cfg", "job", *best["overrides"]).stdout)  # ready to run
    assert composed["optimizer"]["lr"] == pytest.approx(study.best_params["optimizer.lr"])
    assert composed["model"]["dropout"] == pytest.approx(study.best_params["model.dropout"])
    assert str(composed["trainer"]["batch_size"]) == study.best_params["trainer.batch_size"]


def test_bad_search_settings_are_refused(tmp_path):
    proc = run_dlrun(*SEARCH, "hydra.sweeper.direction=up", "hydra.sweeper.n_trials=0",
                     f"hydra.sweep.dir={tmp_path / 'bad'}")
    assert_clean_error(proc, 2, "direction='up': minimize or maximize", "n_trials=0: a positive integer")
