"""Stable-Baselines3's DQN with the RL Zoo's tuned CartPole-v1 hyperparameters (rl-baselines3-zoo,
hyperparams/dqn.yml), for a side-by-side with `dlrun experiment=dqn_cartpole`. A benchmark only: run it in a
separate, throwaway environment (stable-baselines3 is never a dlrun dependency), e.g.
    python -m venv /tmp/sb3 && /tmp/sb3/bin/pip install stable-baselines3 'gymnasium[classic-control]'
    OMP_NUM_THREADS=1 /tmp/sb3/bin/python experiments/rl/sb3_cartpole.py 0 1 2
Each seed: 50,000 steps of training with an EvalCallback (10 greedy episodes every 1,000 steps, the best model
kept: what dlrun's best.pt does), then 100 greedy episodes (seeds 3_000_000 + i) of the final and of the best model.
The last line per seed is JSON for experiments/rl/side_by_side.py: the first evaluation's step with a mean >= 475
("solved") and the training time without the evaluations (timed apart)."""
import json
import tempfile
import sys
import time

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import DQN
from stable_baselines3.common.callbacks import EvalCallback

torch.set_num_threads(1)
ZOO = dict(learning_rate=2.3e-3, batch_size=64, buffer_size=100_000, learning_starts=1000, gamma=0.99,
           target_update_interval=10, train_freq=256, gradient_steps=128, exploration_fraction=0.16,
           exploration_final_eps=0.04, policy_kwargs=dict(net_arch=[256, 256]))


def greedy_returns(model, episodes: int = 100, seed: int = 3_000_000) -> list[float]:
    env, out = gym.make("CartPole-v1"), []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        done, ret = False, 0.0
        while not done:
            action, _ = model.predict(obs, deterministic=True)
            obs, r, term, trunc, _ = env.step(int(action))
            ret, done = ret + r, term or trunc
        out.append(ret)
    return out


class TimedEval(EvalCallback):
    """EvalCallback that also counts the seconds its evaluations take, so training time can be told apart."""

    eval_seconds = 0.0

    def _on_step(self) -> bool:
        t0 = time.perf_counter()
        try:
            return super()._on_step()
        finally:
            self.eval_seconds += time.perf_counter() - t0


for seed in map(int, sys.argv[1:] or ["0"]):
    t0 = time.perf_counter()
    folder = tempfile.mkdtemp()
    eval_env = gym.make("CartPole-v1")
    eval_env.reset(seed=1_000_000 + seed)
    callback = TimedEval(eval_env, n_eval_episodes=10, eval_freq=1000, best_model_save_path=folder, log_path=folder,
                         verbose=0)
    model = DQN("MlpPolicy", gym.make("CartPole-v1"), seed=seed, device="cpu", **ZOO).learn(50_000, callback=callback)
    train_s = time.perf_counter() - t0
    final = greedy_returns(model)
    best = greedy_returns(DQN.load(f"{folder}/best_model.zip", device="cpu"))
    print(f"sb3 seed {seed}: 100 greedy episodes: final model mean {np.mean(final):.1f} (min {min(final):g}), "
          f"best model (eval {callback.best_mean_reward:.1f}) mean {np.mean(best):.1f} (min {min(best):g}); "
          f"training {train_s:.0f} s", flush=True)
    solved = [int(t) for t, r in zip(callback.evaluations_timesteps, callback.evaluations_results) if np.mean(r) >= 475]
    print(json.dumps({"seed": seed, "solved_at": solved[0] if solved else None, "train_s": train_s - callback.eval_seconds,
                      "eval_s": callback.eval_seconds, "final_mean": float(np.mean(final)),
                      "best_mean": float(np.mean(best))}), flush=True)
