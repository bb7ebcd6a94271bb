"""Reinforcement learning behind the trainer's `Loop` seam (dlrun/train/loop.py): `env=NAME` (conf/env/) replaces
the dataset, and `model=dqn | value_iteration | q_learning` is the agent. build.py builds the run, env.py the
gymnasium environments, replay.py the replay buffer, dqn.py deep Q-learning, tabular.py the Bellman equation."""
