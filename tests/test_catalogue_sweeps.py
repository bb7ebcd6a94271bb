"""The training catalogue as users sweep it: every job of each grid runs from the CLI and learns.

Chance on digits is 0.10; each job must beat it clearly. One `dlrun -m` process per grid.
"""
import itertools

import pytest

from tests.conftest import read_json, run_dlrun

INITS = ["lecun", "he", "glorot_uniform", "glorot_normal", "normal", "uniform", "truncated_normal"]
ACTIVATIONS = ["sigmoid", "tanh", "relu", "leaky_relu", "elu", "gelu", "maxout"]


def sweep(tmp_path, *overrides):
    """Run `dlrun -m OVERRIDES` into tmp_path/sweep; return {overrides string: summary} per job."""
    fixed = [o for o in overrides if "," not in o] + ["logger=quiet", "trainer.summary=false"]
    proc = run_dlrun("-m", *overrides, "logger=quiet", "trainer.summary=false",
                     f"hydra.sweep.dir={tmp_path / 'sweep'}", timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    jobs = {}
    for summary in (tmp_path / "sweep").glob("*/summary.json"):
        task = [line[2:] for line in (summary.parent / ".hydra" / "overrides.yaml").read_text().splitlines()]
        jobs[" ".join(o for o in task if o.lower() not in {f.lower() for f in fixed})] = read_json(summary)
    return jobs


@pytest.mark.slow  # 49 jobs: about a minute on 2 cores
def test_init_by_activation_grid_all_49_jobs_learn(tmp_path):
    jobs = sweep(tmp_path, f"model.init={','.join(INITS)}", f"model.activation={','.join(ACTIVATIONS)}",
                 "trainer.epochs=3", "optimizer.lr=0.003")
    assert len(jobs) == 49
    for name, s in jobs.items():
        assert s["status"] == "completed" and s["test_accuracy"] > 0.25, (name, s["test_accuracy"])
    wanted = {f"model.init={i} model.activation={a}" for i, a in itertools.product(INITS, ACTIVATIONS)}
    assert set(jobs) == wanted


@pytest.mark.slow  # test_catalogue.py covers each optimizer and schedule in-process
def test_every_optimizer_and_schedule_in_one_sweep(tmp_path):
    optimizers = "gd,sgd,momentum,momentum_ema,nesterov,adagrad,adadelta,rmsprop,adam,adamw"
    jobs = sweep(tmp_path, f"optimizer={optimizers}", "trainer.epochs=3")
    assert len(jobs) == 10
    for name, s in jobs.items():
        # gd takes 3 steps in 3 epochs, plain sgd at lr 0.01 learns slowly: both still far above chance
        assert s["test_accuracy"] > (0.15 if name in ("optimizer=gd", "optimizer=sgd") else 0.5), (name, s)
    schedules = sweep(tmp_path / "s", "scheduler=none,step,exponential,inverse_time,cosine,plateau,warmup_cosine",
                      "optimizer=momentum", "trainer.epochs=4")
    assert len(schedules) == 7
    assert all(s["test_accuracy"] > 0.8 for s in schedules.values()), schedules


@pytest.mark.parametrize("grid", ["batch", pytest.param("regularisation", marks=pytest.mark.slow)])
def test_batch_regimes_and_the_regularisation_grid(tmp_path, grid):
    if grid == "batch":  # stochastic (one sample per step), mini-batch, full batch; Adam so 3 full-batch steps move
        jobs = sweep(tmp_path, "trainer.batch_size=1,32,full", "trainer.epochs=3", "optimizer=adam", "optimizer.lr=0.01")
        steps = {name: s["last_epoch"]["step"] for name, s in jobs.items()}
        n = next(iter(jobs.values()))["n_train"]
        assert steps == {"trainer.batch_size=1": 3 * n, "trainer.batch_size=32": 3 * -(-n // 32),
                         "trainer.batch_size=full": 3}
        assert all(s["test_accuracy"] > 0.6 for s in jobs.values()), jobs
        return
    jobs = sweep(tmp_path, "trainer.l1=0,0.5", "trainer.l2=0,5", "model.dropout=0,0.3", "model.norm=none,batch,layer",
                 "trainer.epochs=3")
    assert len(jobs) == 24
    for name, s in jobs.items():
        assert s["status"] == "completed" and s["test_accuracy"] > 0.5, (name, s["test_accuracy"])
