"""The build stage of a reinforcement-learning run (the config chooses `env=...`): the environment, the agent's
loop (dlrun/rl/dqn.py, dlrun/rl/tabular.py) and the same trainer, callbacks and loggers a supervised run has
(dlrun/train/build.py). `EnvJob` is the run's `Job`: its summary header and its test pass."""
from __future__ import annotations

import copy
import dataclasses
import functools
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from rich.console import Console

import dlrun
from dlrun.config.schema import Trainer as TrainerSettings
from dlrun.config.schema import settings
from dlrun.errors import DlrunError, did_you_mean
from dlrun.rl import env as envs
from dlrun.rl.dqn import DQNLoop, DQNSettings, QNetwork
from dlrun.rl.replay import ReplayBuffer
from dlrun.rl.tabular import QLearningLoop, Tables, ValueIterationLoop, grid, mdp_from_env, policy_evaluation
from dlrun.train.build import Job, early_stopping, loggers
from dlrun.train.callbacks import LoggerCallback, ModelCheckpoint, RunLogCallback
from dlrun.train.device import set_backends
from dlrun.train.optim import build_optimizer, build_scheduler
from dlrun.train.trainer import Trainer


class EnvJob(Job):
    """A run over an environment's steps: no dataset, no task; the test pass plays greedy episodes."""

    def header(self) -> dict:
        return {"env": self.cfg.env.id, "dataset": None}

    def score(self, summary: dict, plotter) -> None:
        loop, cfg = self.trainer.loop, self.cfg
        summary.update(loop.score(cfg.seed), task="reinforcement_learning", headline="test_return_mean")
        say = (lambda line: self.console.print(line, highlight=False, markup=False)) if cfg.logger.console else None
        write_artifacts(loop, self.trainer.history, self.run_dir, f"{cfg.model.name} on {cfg.env.id}", say)


def check(cfg: DictConfig) -> None:
    """The model is an agent, the run learns from an environment and not from a dataset: else one line."""
    name = cfg.model.name
    if cfg.get("env") is None:
        raise DlrunError(f"model={name} learns from an environment, not a dataset: add env=NAME "
                         "(e.g. env=CartPole-v1; `dlrun list env` shows the options)")
    if name not in AGENTS:
        raise DlrunError(f"model={name} learns from a dataset, and env={cfg.env.id} is an environment: pick an "
                         f"agent (model={' | '.join(AGENTS)}).{did_you_mean(name, AGENTS)}")
    if cfg.get("dataset") is not None:
        raise DlrunError(f"dataset={cfg.dataset.name} and env={cfg.env.id}: a run learns from a dataset or from an "
                         "environment, not both; drop dataset=...")


def build_env_job(cfg: DictConfig, run_dir: Path, device: torch.device, console: Console) -> EnvJob:
    """The environment, the agent's loop, callbacks and trainer for `cfg` (env=... chosen)."""
    check(cfg)
    tset = settings(TrainerSettings, cfg.trainer)
    set_backends(device, tset.tf32, tset.cudnn_benchmark, tset.deterministic)
    loop = AGENTS[cfg.model.name](cfg, tset, device)
    checkpoint = ModelCheckpoint(run_dir / "checkpoints", tset.checkpoint.monitor)
    meta = {"dlrun": dlrun.__version__, "task": "reinforcement_learning", "model": OmegaConf.to_container(cfg.model),
            "env": OmegaConf.to_container(cfg.env)}
    trainer = Trainer(loop, tset.epochs, run_dir, [*early_stopping(tset), LoggerCallback(loggers(cfg, run_dir, console)),
                                                   checkpoint, RunLogCallback()],
                      console if cfg.logger.console else None, OmegaConf.to_container(cfg, resolve=True), meta)
    return EnvJob(cfg, run_dir, console, None, None, trainer, checkpoint)


def _keys(cfg: DictConfig, schema: type) -> dict:
    """model.* keys of a dataclass, each required (a missing one is a one-line error)."""
    missing = [f.name for f in dataclasses.fields(schema) if f.name not in cfg.model]
    if missing:
        raise DlrunError(f"model={cfg.model.name} needs model.{', model.'.join(missing)}")
    return {f.name: cfg.model[f.name] for f in dataclasses.fields(schema)}


def dqn_settings(cfg: DictConfig, tset) -> DQNSettings:
    hp = DQNSettings(**_keys(cfg, DQNSettings))
    problems = []
    if hp.epsilon_schedule not in ("linear", "exponential"):
        problems.append(f"model.epsilon_schedule={hp.epsilon_schedule!r} is not allowed: linear or exponential")
    if hp.buffer_size < tset.batch_size:
        problems.append(f"model.buffer_size={hp.buffer_size} is smaller than trainer.batch_size={tset.batch_size}: "
                        "a batch is drawn from the buffer")
    if (hp.tau is None) == (hp.target_update is None):
        problems.append("set one of model.target_update (hard copy every N steps) and model.tau (Polyak), "
                        "the other null")
    if hp.learning_starts < tset.batch_size:
        problems.append(f"model.learning_starts={hp.learning_starts} is below trainer.batch_size={tset.batch_size}")
    if problems:
        raise DlrunError("invalid config: " + "; ".join(problems))
    return hp


def dqn(cfg: DictConfig, tset, device: torch.device) -> DQNLoop:
    """model=dqn: the Q-network, its target copy, replay, optimizer and schedule."""
    if tset.batch_size == "full":
        raise DlrunError("model=dqn draws batches from its replay buffer: trainer.batch_size must be a number")
    hp = dqn_settings(cfg, tset)
    make_env = functools.partial(envs.make, cfg.env)
    env = make_env()
    obs_shape, n_actions, discrete = envs.spaces(env, cfg.env.id, "dqn")
    model = QNetwork(obs_shape, n_actions, list(cfg.model.hidden), cfg.model.activation).to(device)
    optimizer = build_optimizer(cfg.optimizer, model.parameters())
    updates = max(1, tset.steps_per_epoch // hp.train_freq * hp.gradient_steps)
    scheduler, interval = build_scheduler(cfg.scheduler, optimizer, tset.epochs, updates)
    frames = len(obs_shape) == 3
    buffer = ReplayBuffer(hp.buffer_size, obs_shape, torch.uint8 if frames else torch.float32)
    return DQNLoop(model, copy.deepcopy(model), optimizer, scheduler, interval, env, make_env,
                   obs_shape[0] if discrete else None, buffer, hp, tset, cfg.seed, cfg.env.test_episodes, device)


def _tabular(cfg: DictConfig, tset):
    make_env = functools.partial(envs.make, cfg.env)
    env = make_env()
    envs.spaces(env, cfg.env.id, cfg.model.name)
    mdp = mdp_from_env(env, cfg.env.id, cfg.model.name)
    common = dict(gamma=cfg.model.gamma, tset=tset, seed=cfg.seed, test_episodes=cfg.env.test_episodes)
    return Tables(mdp.states, mdp.actions), mdp, env, make_env, common


def value_iteration(cfg: DictConfig, tset, device: torch.device) -> ValueIterationLoop:
    """model=value_iteration: Bellman optimality sweeps over the environment's transition model."""
    model, mdp, env, make_env, common = _tabular(cfg, tset)
    return ValueIterationLoop(model, mdp, env, make_env, **common, sweeps_per_epoch=cfg.model.sweeps_per_epoch,
                              theta=cfg.model.theta)


def q_learning(cfg: DictConfig, tset, device: torch.device) -> QLearningLoop:
    """model=q_learning: tabular Q-learning from epsilon-greedy experience."""
    model, mdp, env, make_env, common = _tabular(cfg, tset)
    hp = DQNSettings(**{f.name: cfg.model.get(f.name) for f in dataclasses.fields(DQNSettings)})
    return QLearningLoop(model, mdp, env, make_env, **common, alpha=cfg.model.alpha, hp=hp)


AGENTS = {"dqn": dqn, "value_iteration": value_iteration, "q_learning": q_learning}  # model=NAME -> its loop


def write_artifacts(loop, history: list[dict], run_dir: Path, title: str, say) -> None:
    """returns.png (training and evaluation returns against environment steps); for a tabular agent on a grid,
    policy.txt (the greedy policy's arrows and its exact values, no time limit) and convergence.csv (||V_k+1 - V_k|| per sweep)."""
    if any("env_steps" in r for r in history):
        draw_returns(history, run_dir / "returns.png", title)
    if isinstance(loop.model, Tables):
        policy = loop.model.greedy()
        text = grid(loop.env, policy_evaluation(loop.mdp, policy, 1.0), policy)  # V of the greedy policy itself
        if text is not None:
            (run_dir / "policy.txt").write_text(text + "\n")
            if say:
                say(f"greedy policy and V ({title}):\n{text}")
        if loop.deltas:
            (run_dir / "convergence.csv").write_text(
                "sweep,delta\n" + "".join(f"{i + 1},{d:.6g}\n" for i, d in enumerate(loop.deltas)))


def draw_returns(history: list[dict], path: Path, title: str) -> None:
    from dlrun.plotter import pyplot, save

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    steps = [r["env_steps"] for r in history]
    train = [(s, r["train_return_mean"]) for s, r in zip(steps, history) if r.get("train_return_mean") is not None]
    if train:
        ax.plot(*zip(*train), linestyle="--", alpha=0.7, label="training episodes (mean per epoch)")
    ax.plot(steps, [r["val_return_mean"] for r in history], marker="o", label="greedy evaluation (mean)")
    if "val_return_min" in history[0]:
        ax.fill_between(steps, [r["val_return_min"] for r in history], [r["val_return_max"] for r in history],
                        alpha=0.2, label="evaluation min..max")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("return")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    save(fig, path)
