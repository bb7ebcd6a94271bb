#!/usr/bin/env bash
# Reinforcement-learning results (experiments/rl/results.md): run from the repository root.
# One run at a time, one thread: OMP_NUM_THREADS=1. About 10 minutes on a 2-core CPU.
set -euo pipefail
export OMP_NUM_THREADS=1
OUT=${OUT:-experiments/rl/sweep}  # git-ignored (experiments/**/sweep/)

# 1. DQN on CartPole-v1, three seeds: solved = mean greedy return >= 475 over 100 test episodes, in 50,000 steps
for seed in 0 1 2; do
  dlrun experiment=dqn_cartpole seed=$seed logger.console=false hydra.run.dir=$OUT/dqn_cartpole_s$seed
done
dlrun report $OUT/dqn_cartpole_s* --metric test_return_mean --out $OUT/dqn_cartpole_report

# 2. Value iteration on FrozenLake 4x4 and 8x8 (slippery): exact success probability of the greedy policy vs the
#    optimum V*(start), and 10,000 sampled episodes; without the time limit (max_episode_steps=100000) and with it
for env in FrozenLake-v1 FrozenLake8x8-v1; do
  for limit in 100000 null; do
    dlrun model=value_iteration env=$env env.max_episode_steps=$limit trainer.epochs=1000 env.test_episodes=10000 \
      logger.console=false hydra.run.dir=$OUT/vi_${env}_limit$limit
  done
done

# 3. Tabular Q-learning on FrozenLake 4x4 (200,000 steps) and 8x8 (1,000,000 steps), no time limit
dlrun model=q_learning env=FrozenLake-v1 trainer.epochs=20 trainer.steps_per_epoch=10000 model.gamma=0.999 \
  model.alpha=0.05 model.epsilon_steps=150000 env.max_episode_steps=100000 env.test_episodes=10000 \
  logger.console=false hydra.run.dir=$OUT/ql_FrozenLake-v1
dlrun model=q_learning env=FrozenLake8x8-v1 trainer.epochs=20 trainer.steps_per_epoch=50000 model.gamma=0.999 \
  model.alpha=0.05 model.epsilon_steps=750000 env.max_episode_steps=100000 env.test_episodes=10000 \
  logger.console=false hydra.run.dir=$OUT/ql_FrozenLake8x8-v1

# 4. A sweep over environments and epsilon schedules, and its report table with returns
dlrun -m model=dqn env=CartPole-v1,Acrobot-v1 model.epsilon_schedule=linear,exponential model.epsilon_steps=2000 \
  trainer.epochs=5 trainer.steps_per_epoch=1000 trainer.eval_episodes=5 logger=quiet hydra.sweep.dir=$OUT/sweep_env_eps
dlrun report $OUT/sweep_env_eps --metric test_return_mean
