"""The Bellman equation itself, on environments that expose their transition model (gymnasium's toy text:
`env.unwrapped.P[s][a] = [(probability, next state, reward, terminated), ...]`).

- `model=value_iteration`: V_{k+1}(s) = max_a sum_s' p(s'|s,a) (r + gamma V_k(s') [s' not terminal]), one sweep
  per iteration, until ||V_{k+1} - V_k||_inf < theta; an epoch is `model.sweeps_per_epoch` sweeps.
- `model=q_learning`: Q(s,a) += alpha (r + gamma max_a' Q(s',a') - Q(s,a)) on epsilon-greedy experience; an epoch is
  `trainer.steps_per_epoch` environment steps.
After each epoch the greedy policy is evaluated exactly (`policy_evaluation`: its expected return from the start
distribution, FrozenLake's success probability), which is `val_return_mean`; the test pass adds sampled episodes.
"""
from __future__ import annotations

import dataclasses
import time

import numpy as np
import torch

from dlrun.errors import DlrunError
from dlrun.models.tables import Tables
from dlrun.rl.dqn import DQNSettings, episode_metrics, run_episodes
from dlrun.rl.env import get_state, set_state
from dlrun.train.loop import Loop

ARROWS = "←↓→↑"  # FrozenLake's actions 0..3


@dataclasses.dataclass
class MDP:
    """A finite MDP as arrays: expected reward R[s,a], continuation C[s,a,s'] = p(s'|s,a) [s' not terminal],
    start distribution start[s]."""

    R: np.ndarray
    C: np.ndarray
    start: np.ndarray

    @property
    def states(self) -> int:
        return self.R.shape[0]

    @property
    def actions(self) -> int:
        return self.R.shape[1]


def mdp_from_env(env, env_id: str, model: str) -> MDP:
    """The transition model of a toy-text environment; one without it is a one-line error."""
    u = env.unwrapped
    P = vars(u).get("P")
    if not isinstance(P, dict):
        raise DlrunError(f"model={model} needs an environment that exposes its transition model (env.unwrapped.P), "
                         f"which env={env_id} does not; gymnasium's toy-text ones do (FrozenLake-v1, CliffWalking-v1, "
                         "Taxi-v4)")
    S, A = u.observation_space.n, u.action_space.n
    R, C = np.zeros((S, A)), np.zeros((S, A, S))
    for s in range(S):
        for a in range(A):
            for p, nxt, r, term in P[s][a]:
                R[s, a] += p * r
                if not term:
                    C[s, a, nxt] += p
    start = np.asarray(vars(u).get("initial_state_distrib", np.eye(S)[0]), dtype=np.float64)
    return MDP(R, C, start)


def bellman_q(mdp: MDP, V: np.ndarray, gamma: float) -> np.ndarray:
    """Q(s,a) = R(s,a) + gamma sum_s' C(s,a,s') V(s')."""
    return mdp.R + gamma * mdp.C @ V


def value_iteration(mdp: MDP, gamma: float, theta: float = 1e-10, max_sweeps: int = 100_000):
    """(V*, Q*, [||V_{k+1} - V_k||_inf per sweep]) by sweeps until the change is below theta."""
    V, deltas = np.zeros(mdp.states), []
    for _ in range(max_sweeps):
        Q = bellman_q(mdp, V, gamma)
        new = Q.max(axis=1)
        deltas.append(float(np.abs(new - V).max()))
        V = new
        if deltas[-1] < theta:
            break
    return V, bellman_q(mdp, V, gamma), deltas


def policy_evaluation(mdp: MDP, policy: np.ndarray, gamma: float, horizon: int | None = None,
                      tol: float = 1e-13) -> np.ndarray:
    """V_pi exactly: the linear system V = R_pi + gamma C_pi V (solved when gamma < 1 and no horizon); else
    iterated from 0 for `horizon` steps (the expected return of episodes cut at the environment's time limit,
    what sampled episodes measure), stopping early once nothing changes any more."""
    s = np.arange(mdp.states)
    R, C = mdp.R[s, policy], mdp.C[s, policy]
    if gamma < 1 and horizon is None:
        return np.linalg.solve(np.eye(mdp.states) - gamma * C, R)
    V = np.zeros(mdp.states)
    for _ in range(horizon or 100_000):
        new = R + C @ V
        if np.abs(new - V).max() < tol:
            return new
        V = new
    return V


class TabularLoop(Loop):
    """What the two tabular agents share: exact evaluation of the greedy policy, sampled test episodes, state."""

    def __init__(self, model: Tables, mdp: MDP, env, make_env, gamma: float, tset, seed: int, test_episodes: int):
        self.model, self.mdp, self.env, self.make_env, self.gamma = model, mdp, env, make_env, gamma
        self.tset, self.seed, self.test_episodes = tset, seed, test_episodes
        self.device, self.optimizer, self.scheduler = torch.device("cpu"), None, None
        self.step, self.epoch_step, self.deltas = 0, 0, []

    def exact_return(self, horizon: int | None = -1) -> float:
        """The greedy policy's expected (undiscounted) return from the start distribution, episodes cut at the
        environment's time limit unless `horizon` says otherwise (FrozenLake: its success probability)."""
        horizon = self.env.spec.max_episode_steps if horizon == -1 else horizon
        return float(self.mdp.start @ policy_evaluation(self.mdp, self.model.greedy(), 1.0, horizon))

    def policy(self, observations: list) -> list[int]:
        greedy = self.model.greedy()
        return [int(greedy[int(o)]) for o in observations]

    def score(self, seed: int) -> dict:
        returns, lengths = run_episodes(self.policy, self.make_env, self.test_episodes, seed + 2_000_000)
        return {**episode_metrics("test", returns, lengths), "test_return_exact": self.exact_return(),
                "test_return_exact_unlimited": self.exact_return(None),  # no time limit
                "test_success_rate": sum(r > 0 for r in returns) / len(returns)}

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "step": self.step, "epoch_step": self.epoch_step,
                "deltas": list(self.deltas)}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.step, self.epoch_step, self.deltas = state["step"], state["epoch_step"], list(state["deltas"])


class ValueIterationLoop(TabularLoop):
    def __init__(self, *args, sweeps_per_epoch: int, theta: float, **kw):
        super().__init__(*args, **kw)
        self.sweeps_per_epoch, self.theta = sweeps_per_epoch, theta

    def run_epoch(self, epoch: int) -> dict:
        t0 = time.perf_counter()
        V = self.model.V.numpy()
        for _ in range(self.sweeps_per_epoch):
            Q = bellman_q(self.mdp, V, self.gamma)
            new = Q.max(axis=1)
            self.deltas.append(float(np.abs(new - V).max()))
            V = new
            self.step += 1
            if self.deltas[-1] < self.theta:
                self.trainer.stop_reason = f"converged: ||V_k+1 - V_k|| = {self.deltas[-1]:.3g} < {self.theta:g}"
                break
        self.model.V.copy_(torch.from_numpy(V))
        self.model.Q.copy_(torch.from_numpy(bellman_q(self.mdp, V, self.gamma)))
        return {"step": self.step, "delta": self.deltas[-1], "v_start": float(self.mdp.start @ V),
                "val_return_mean": self.exact_return(), "epoch_time": time.perf_counter() - t0}


class QLearningLoop(TabularLoop):
    def __init__(self, *args, alpha: float, hp: DQNSettings, **kw):
        super().__init__(*args, **kw)
        self.alpha, self.hp = alpha, hp
        self.generator = torch.Generator().manual_seed(self.seed)
        self.obs, self.reseed, self.env_steps, self.episodes = None, self.seed, 0, 0

    def run_epoch(self, epoch: int) -> dict:
        t0, returns, ret = time.perf_counter(), [], 0.0
        Q = self.model.Q.numpy()  # updated in place
        for _ in range(self.tset.steps_per_epoch):
            if self.obs is None:
                self.obs, self.reseed, ret = int(self.env.reset(seed=self.reseed)[0]), None, 0.0
            s = self.obs
            explore = float(torch.rand((), generator=self.generator)) < self.hp.epsilon(self.env_steps)
            a = int(torch.randint(Q.shape[1], (), generator=self.generator)) if explore else int(Q[s].argmax())
            nxt, r, term, trunc, _ = self.env.step(a)
            Q[s, a] += self.alpha * (r + (0.0 if term else self.gamma * Q[nxt].max()) - Q[s, a])
            self.env_steps, self.step, ret, self.obs = self.env_steps + 1, self.step + 1, ret + float(r), int(nxt)
            if term or trunc:
                returns.append(ret)
                self.obs, self.episodes = None, self.episodes + 1
        self.model.V.copy_(self.model.Q.max(dim=1).values)
        return {"step": self.step, "env_steps": self.env_steps, "episodes": self.episodes,
                "epsilon": self.hp.epsilon(self.env_steps), "train_episodes": len(returns),
                "train_return_mean": sum(returns) / len(returns) if returns else None,
                "val_return_mean": self.exact_return(), "epoch_time": time.perf_counter() - t0}

    def state_dict(self) -> dict:
        return {**super().state_dict(), "generator": self.generator.get_state(), "env": get_state(self.env),
                "counters": {"obs": self.obs, "reseed": self.reseed, "env_steps": self.env_steps,
                             "episodes": self.episodes}}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.generator.set_state(state["generator"])
        c = state["counters"]
        self.obs, self.reseed, self.env_steps, self.episodes = c["obs"], c["reseed"], c["env_steps"], c["episodes"]
        restored = set_state(self.env, state["env"])  # also between episodes: the next start draws from its generator
        if self.obs is not None and not restored:
            self.obs, self.reseed = None, self.seed + 7919


def grid(env, V: np.ndarray, policy: np.ndarray) -> str | None:
    """The lake as text: each cell's letter (S, F, H, G), the greedy action's arrow on the cells where an
    action matters, and V below; None for environments that are not a grid of letters."""
    desc = vars(env.unwrapped).get("desc")
    if desc is None:
        return None
    rows, cols = desc.shape
    lines = []
    for i in range(rows):
        cells = [desc[i, j].decode() for j in range(cols)]
        lines.append(" ".join(c if c in "HG" else ARROWS[policy[i * cols + j]] for j, c in enumerate(cells)))
    lines.append("")
    for i in range(rows):
        lines.append(" ".join(f"{V[i * cols + j]:.3f}" for j in range(cols)))
    return "\n".join(lines)
