"""Deep Q-learning (Mnih et al. 2015) as a `Loop`: an epoch is `trainer.steps_per_epoch` environment steps
(epsilon-greedy, into the replay buffer, an update every `train_freq` steps once `learning_starts` have been
taken), then `trainer.eval_episodes` greedy episodes on a separately seeded environment.

Read `DQNLoop.run_epoch` -> `_env_step` -> `_update`; `td_target` is the Bellman target, Double DQN included.
"""
from __future__ import annotations

import dataclasses
import math
import time

import torch
from torch import nn

from dlrun.models.qnetwork import QNetwork
from dlrun.rl.env import as_tensor, get_state, set_state
from dlrun.rl.replay import ReplayBuffer
from dlrun.train.loop import Interrupted, Loop


def td_target(reward: torch.Tensor, terminated: torch.Tensor, next_q_target: torch.Tensor, gamma: float,
              next_q_online: torch.Tensor | None = None) -> torch.Tensor:
    """r + gamma * (1 - terminated) * Q'(s', a*): a* = argmax of the target net's Q (DQN), or of the online
    net's Q, evaluated by the target net (Double DQN, van Hasselt et al. 2016)."""
    if next_q_online is None:
        best = next_q_target.max(dim=1).values
    else:
        best = next_q_target.gather(1, next_q_online.argmax(dim=1, keepdim=True)).squeeze(1)
    return reward + gamma * (1.0 - terminated) * best


@dataclasses.dataclass
class DQNSettings:
    """model=dqn's keys (conf/model/dqn.yaml)."""

    gamma: float
    buffer_size: int
    learning_starts: int
    train_freq: int
    gradient_steps: int
    target_update: int | None  # hard copy every N environment steps...
    tau: float | None  # ...or Polyak averaging after every update
    double: bool
    epsilon_schedule: str  # linear | exponential
    epsilon_start: float
    epsilon_end: float
    epsilon_steps: int  # linear: steps to reach epsilon_end; exponential: the decay's time constant

    def epsilon(self, env_steps: int) -> float:
        s, e = self.epsilon_start, self.epsilon_end
        if self.epsilon_schedule == "linear":
            return s + (e - s) * min(1.0, env_steps / self.epsilon_steps)
        return e + (s - e) * math.exp(-env_steps / self.epsilon_steps)


def run_episodes(policy, make_env, count: int, seed: int, parallel: int = 100) -> tuple[list[float], list[int]]:
    """(returns, lengths) of `count` episodes of `policy` (a batch of observations -> actions), episode i reset
    with seed `seed + i`; up to `parallel` environments step together, so the network sees one batch a step."""
    returns, lengths = [], []
    envs = [make_env() for _ in range(min(count, parallel))]
    for first in range(0, count, len(envs)):
        batch = envs[:min(len(envs), count - first)]
        obs = [e.reset(seed=seed + first + j)[0] for j, e in enumerate(batch)]
        ret, length, live = [0.0] * len(batch), [0] * len(batch), list(range(len(batch)))
        while live:
            actions = policy([obs[j] for j in live])
            for j, a in zip(list(live), actions):
                obs[j], r, term, trunc, _ = batch[j].step(a)
                ret[j] += float(r)
                length[j] += 1
                if term or trunc:
                    live.remove(j)
        returns += ret
        lengths += length
    for e in envs:
        e.close()
    return returns, lengths


def episode_metrics(prefix: str, returns: list[float], lengths: list[int]) -> dict:
    t = torch.tensor(returns, dtype=torch.float64)
    return {f"{prefix}_return_mean": float(t.mean()), f"{prefix}_return_std": float(t.std()) if len(t) > 1 else 0.0,
            f"{prefix}_return_min": float(t.min()), f"{prefix}_return_max": float(t.max()),
            f"{prefix}_length_mean": sum(lengths) / len(lengths)}


class DQNLoop(Loop):
    """Epochs of environment steps with DQN's updates; the greedy evaluation after each."""

    def __init__(self, model: QNetwork, target: QNetwork, optimizer, scheduler, interval: str, env, make_env,
                 discrete: int | None, buffer: ReplayBuffer, hp: DQNSettings, tset, seed: int,
                 test_episodes: int, device: torch.device):
        self.model, self.target, self.optimizer = model, target, optimizer
        self.scheduler, self.scheduler_interval = scheduler, interval
        self.env, self.make_env, self.discrete, self.buffer, self.hp = env, make_env, discrete, buffer, hp
        self.tset, self.seed, self.test_episodes, self.device = tset, seed, test_episodes, device
        self.generator = torch.Generator().manual_seed(seed)  # exploration and replay sampling
        self.step, self.epoch_step, self.env_steps, self.episodes, self.restarts = 0, 0, 0, 0, 0
        self.obs, self.ep_return, self.ep_length = None, 0.0, 0  # the training episode under way
        self.reseed: int | None = seed  # the seed of the next reset, if it takes one
        self.loss_fn = nn.SmoothL1Loss()
        self._partial = self._fresh()
        self.target.load_state_dict(model.state_dict())
        self.target.requires_grad_(False)

    def _fresh(self) -> dict:
        return {"returns": [], "lengths": [], "loss_sum": 0.0, "q_sum": 0.0, "updates": 0, "seconds": 0.0}

    # ---- an epoch ------------------------------------------------------------------------------
    def run_epoch(self, epoch: int) -> dict:
        t0, p = time.perf_counter(), self._partial
        self.model.train()
        every, last = self.tset.checkpoint_every_steps, self.tset.steps_per_epoch
        for i in range(self.epoch_step, last):
            self._env_step()
            signal = self.trainer.signal
            if i + 1 < last and (signal is not None or (every and self.env_steps % every == 0)):
                self._save_mid_epoch(i + 1, time.perf_counter() - t0)  # trainer.checkpoint_every_steps: env steps
                if signal is not None:
                    raise Interrupted(signal)
        seconds = p["seconds"] + time.perf_counter() - t0
        lr = self.optimizer.param_groups[0]["lr"]
        if self.scheduler is not None and self.scheduler_interval == "epoch":
            self.scheduler.step()
        row = {"step": self.step, "env_steps": self.env_steps, "episodes": self.episodes,
               "epsilon": self.hp.epsilon(self.env_steps),
               "train_loss": p["loss_sum"] / p["updates"] if p["updates"] else None,  # the TD (Huber) loss
               "q_mean": p["q_sum"] / p["updates"] if p["updates"] else None,
               "train_episodes": len(p["returns"]),
               "train_return_mean": sum(p["returns"]) / len(p["returns"]) if p["returns"] else None,
               **episode_metrics("val", *self.evaluate(self.tset.eval_episodes, self.seed + 1_000_000 + 1000 * epoch)),
               "lr": lr, "epoch_time": seconds}
        if self.restarts:
            row["restarted_episodes"] = self.restarts
        self.epoch_step, self._partial = 0, self._fresh()
        return row

    def _env_step(self) -> None:
        """One step of the training environment, epsilon-greedy; the updates and target copies it is due."""
        if self.obs is None:  # the first episode is seeded; later ones continue the environment's generator
            self.obs = as_tensor(self.env.reset(seed=self.reseed)[0], self.discrete)
            self.reseed = None
        action = self._act(self.obs)
        nxt, reward, terminated, truncated, _ = self.env.step(action)
        nxt = as_tensor(nxt, self.discrete)
        self.buffer.add(self.obs, action, float(reward), nxt, bool(terminated))
        self.env_steps += 1
        self.ep_return += float(reward)
        self.ep_length += 1
        self.obs = nxt
        if terminated or truncated:
            self._partial["returns"].append(self.ep_return)
            self._partial["lengths"].append(self.ep_length)
            self.obs, self.ep_return, self.ep_length = None, 0.0, 0
            self.episodes += 1
        hp = self.hp
        if self.env_steps > hp.learning_starts and self.env_steps % hp.train_freq == 0:
            for _ in range(hp.gradient_steps):
                self._update()
        if hp.tau is None and self.env_steps % hp.target_update == 0:
            self.target.load_state_dict(self.model.state_dict())

    def _act(self, obs: torch.Tensor) -> int:
        if float(torch.rand((), generator=self.generator)) < self.hp.epsilon(self.env_steps):
            return int(torch.randint(self.env.action_space.n, (), generator=self.generator))
        with torch.no_grad():
            return int(self.model(obs.unsqueeze(0).to(self.device)).argmax(dim=1))

    def _update(self) -> None:
        """One gradient step on a replayed batch: Huber loss between Q(s, a) and the TD target."""
        obs, actions, rewards, nxt, terminated = (t.to(self.device) for t in
                                                  self.buffer.sample(self.tset.batch_size, self.generator))
        q = self.model(obs).gather(1, actions.unsqueeze(1)).squeeze(1)
        with torch.no_grad():
            target = td_target(rewards, terminated, self.target(nxt), self.hp.gamma,
                               self.model(nxt) if self.hp.double else None)
        loss = self.loss_fn(q, target)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.tset.max_grad_norm:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.tset.max_grad_norm)
        self.optimizer.step()
        if self.scheduler is not None and self.scheduler_interval == "step":
            self.scheduler.step()
        if self.hp.tau is not None:
            with torch.no_grad():
                for t, o in zip(self.target.parameters(), self.model.parameters()):
                    t.lerp_(o, self.hp.tau)
        self.step += 1
        self._partial["loss_sum"] += float(loss.detach())
        self._partial["q_sum"] += float(q.detach().mean())
        self._partial["updates"] += 1

    # ---- evaluation ----------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, episodes: int, seed: int) -> tuple[list[float], list[int]]:
        self.model.eval()
        try:
            return run_episodes(self.policy, self.make_env, episodes, seed)
        finally:
            self.model.train()

    def policy(self, observations: list) -> list[int]:
        """Greedy actions for a batch of raw observations."""
        x = torch.stack([as_tensor(o, self.discrete) for o in observations]).to(self.device)
        return self.model(x).argmax(dim=1).tolist()

    def score(self, seed: int) -> dict:
        """The test pass: `env.test_episodes` greedy episodes, seeded apart from training and validation."""
        return episode_metrics("test", *self.evaluate(self.test_episodes, seed + 2_000_000))

    def example_input(self) -> torch.Tensor:
        return torch.zeros((1, *self.buffer.obs_shape), dtype=self.buffer.obs_dtype, device=self.device)

    # ---- state ---------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "target": self.target.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
                "replay": self.buffer.state_dict(), "generator": self.generator.get_state(),
                "env": get_state(self.env), "obs": self.obs, "episode": [self.ep_return, self.ep_length],
                "counters": {"step": self.step, "env_steps": self.env_steps, "episodes": self.episodes,
                             "restarts": self.restarts, "reseed": self.reseed},
                "step": self.step, "epoch_step": self.epoch_step, "partial": self._partial}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.target.load_state_dict(state["target"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.buffer.load_state_dict(state["replay"])
        self.generator.set_state(state["generator"])
        c = state["counters"]
        self.step, self.env_steps, self.episodes, self.restarts = c["step"], c["env_steps"], c["episodes"], c["restarts"]
        self.reseed = c["reseed"]
        self.epoch_step, self._partial = state["epoch_step"], state["partial"]
        restored = set_state(self.env, state["env"])  # also between episodes: the next start draws from its generator
        if state["obs"] is not None and not restored:
            self.restarts += 1  # the interrupted episode restarts (see dlrun/rl/env.py), counted
            self.reseed = self.seed + 7919 * self.restarts
            state = {**state, "obs": None, "episode": [0.0, 0]}
        self.obs, (self.ep_return, self.ep_length) = state["obs"], state["episode"]

    def _save_mid_epoch(self, steps_done: int, seconds: float) -> None:
        before = self.epoch_step, self._partial["seconds"]
        self.epoch_step = steps_done
        self._partial["seconds"] += seconds
        try:
            self.trainer.save(self.trainer.run_dir / "checkpoints" / "last.pt")
        finally:
            self.epoch_step, self._partial["seconds"] = before
