"""A small DQN's Q-values on FrozenLake against the tabular reference (value iteration on the environment's own
transition model, same gamma): per state, max_a Q, the greedy action, and the exact success probability of each
greedy policy (policy evaluation, episodes cut at the environment's time limit, as the DQN run's test episodes).
Run: .venv/bin/python experiments/rl/frozenlake_q_check.py RUN_DIR   (a run of model=dqn env=FrozenLake-v1)"""
import sys
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from dlrun.rl import env as envs
from dlrun.rl.dqn import QNetwork
from dlrun.rl.tabular import mdp_from_env, policy_evaluation, value_iteration
from dlrun.train.checkpoint import load_checkpoint

run = Path(sys.argv[1])
state = load_checkpoint(run / "checkpoints" / "best.pt")
cfg = OmegaConf.create(state["config"])
env = envs.make(cfg.env)
mdp = mdp_from_env(env, cfg.env.id, "dqn")
net = QNetwork((mdp.states,), mdp.actions, list(cfg.model.hidden), cfg.model.activation)
net.load_state_dict(state["model"])
with torch.no_grad():
    q_dqn = net(torch.eye(mdp.states)).double().numpy()
V, q_ref, _ = value_iteration(mdp, cfg.model.gamma, theta=1e-12)
desc = env.unwrapped.desc.astype(str).ravel()
live = np.array([c in "SF" for c in desc])  # states where an action matters (not a hole, not the goal)
horizon = env.spec.max_episode_steps
exact = {name: float(mdp.start @ policy_evaluation(mdp, q.argmax(1), 1.0, horizon)) for name, q in
         (("dqn", q_dqn), ("tabular", q_ref))}
agree = (q_dqn.argmax(1) == q_ref.argmax(1))[live]
print(f"{run}: gamma {cfg.model.gamma}; over the {live.sum()} states where an action matters:")
print(f"  max |max_a Q_dqn - V*| = {np.abs(q_dqn.max(1) - V)[live].max():.3f}, mean {np.abs(q_dqn.max(1) - V)[live].mean():.3f}")
print(f"  greedy actions agree in {agree.sum()}/{live.sum()} states")
print(f"  exact success probability within {horizon} steps: dqn {exact['dqn']:.4f}, tabular optimum {exact['tabular']:.4f}")
