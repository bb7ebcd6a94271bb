"""Experience replay: a ring buffer of transitions (s, a, r, s', terminated) in preallocated tensors, sampled
uniformly with the loop's own generator. Frames stay uint8 (4x smaller than float); a checkpoint holds only
the filled part."""
from __future__ import annotations

import torch


class ReplayBuffer:
    def __init__(self, capacity: int, obs_shape: tuple, obs_dtype: torch.dtype = torch.float32):
        self.capacity, self.obs_shape, self.obs_dtype = capacity, tuple(obs_shape), obs_dtype
        self.obs = torch.zeros((capacity, *obs_shape), dtype=obs_dtype)
        self.next_obs = torch.zeros((capacity, *obs_shape), dtype=obs_dtype)
        self.actions = torch.zeros(capacity, dtype=torch.long)
        self.rewards = torch.zeros(capacity)
        self.terminated = torch.zeros(capacity)  # 1: no bootstrap from s' (a time limit's truncation is 0)
        self.pos, self.size = 0, 0

    def __len__(self) -> int:
        return self.size

    def add(self, obs: torch.Tensor, action: int, reward: float, next_obs: torch.Tensor, terminated: bool) -> None:
        i = self.pos
        self.obs[i], self.next_obs[i] = obs, next_obs
        self.actions[i], self.rewards[i], self.terminated[i] = action, reward, float(terminated)
        self.pos = (i + 1) % self.capacity  # wraps: the oldest transition is overwritten
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        """`batch` transitions drawn uniformly, with replacement, from the filled part."""
        idx = torch.randint(self.size, (batch,), generator=generator)
        return self.obs[idx], self.actions[idx], self.rewards[idx], self.next_obs[idx], self.terminated[idx]

    def state_dict(self) -> dict:
        n = self.size
        return {"obs": self.obs[:n].clone(), "next_obs": self.next_obs[:n].clone(), "actions": self.actions[:n].clone(),
                "rewards": self.rewards[:n].clone(), "terminated": self.terminated[:n].clone(), "pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        n = len(state["actions"])
        for key in ("obs", "next_obs", "actions", "rewards", "terminated"):
            getattr(self, key)[:n] = state[key]
        self.size, self.pos = n, state["pos"]
