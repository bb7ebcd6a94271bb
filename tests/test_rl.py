"""Reinforcement learning (dlrun/rl): the replay buffer, the TD target and Double DQN by hand, value iteration
against a closed form, a short CartPole run that learns, bad inputs refused, and kill -9 / SIGTERM then resume
landing on the uninterrupted run's returns."""
import signal

import numpy as np
import pytest
import torch

from conftest import assert_clean_error, interrupt_after, read_json, read_jsonl, run_dlrun

pytest.importorskip("gymnasium")

from dlrun.rl.dqn import td_target  # noqa: E402
from dlrun.rl.replay import ReplayBuffer  # noqa: E402
from dlrun.rl.tabular import MDP, policy_evaluation, value_iteration  # noqa: E402


def test_the_replay_buffer_wraps_and_samples_uniformly():
    buf = ReplayBuffer(4, (1,))
    for i in range(6):  # 6 into 4 slots: 0 and 1 are overwritten by 4 and 5
        buf.add(torch.tensor([float(i)]), i, float(i), torch.tensor([i + 1.0]), i == 5)
    assert len(buf) == 4 and buf.pos == 2
    assert sorted(buf.obs[:, 0].tolist()) == [2, 3, 4, 5]
    obs, actions, rewards, nxt, term = buf.sample(40_000, torch.Generator().manual_seed(0))
    assert torch.equal(nxt[:, 0], obs[:, 0] + 1) and torch.equal(actions.float(), obs[:, 0])  # rows stay whole
    counts = torch.bincount(actions, minlength=6)[2:].float()
    assert counts.sum() == 40_000 and (counts / 10_000 - 1).abs().max() < 0.05  # uniform over the filled part
    assert term[actions == 5].all() and not term[actions != 5].any()
    state = buf.state_dict()  # only the filled part goes into a checkpoint
    assert len(state["obs"]) == 4
    half = ReplayBuffer(8, (1,))
    half.add(torch.tensor([1.0]), 0, 1.0, torch.tensor([2.0]), False)
    assert len(half.state_dict()["obs"]) == 1
    again = ReplayBuffer(4, (1,))
    again.load_state_dict(state)
    assert torch.equal(again.obs, buf.obs) and again.pos == 2 and len(again) == 4


def test_the_td_target_is_the_bellman_backup_by_hand():
    reward = torch.tensor([1.0, 0.5, -1.0])
    terminated = torch.tensor([0.0, 1.0, 0.0])
    next_q = torch.tensor([[1.0, 3.0], [10.0, 20.0], [-2.0, -4.0]])
    got = td_target(reward, terminated, next_q, gamma=0.9)
    # 1 + 0.9 * 3; 0.5 (terminal: no bootstrap); -1 + 0.9 * -2
    assert got.tolist() == pytest.approx([1 + 0.9 * 3, 0.5, -1 + 0.9 * -2])


def test_double_dqn_picks_with_the_online_net_and_values_with_the_target_net():
    reward, terminated = torch.tensor([0.0, 1.0]), torch.tensor([0.0, 0.0])
    target_q = torch.tensor([[5.0, 1.0], [2.0, 7.0]])  # the target net prefers a=0, then a=1
    online_q = torch.tensor([[0.0, 9.0], [8.0, 0.0]])  # the online net prefers a=1, then a=0
    got = td_target(reward, terminated, target_q, 0.5, next_q_online=online_q)
    assert got.tolist() == pytest.approx([0 + 0.5 * 1.0, 1 + 0.5 * 2.0])  # target_q[online's argmax]
    assert td_target(reward, terminated, target_q, 0.5).tolist() == pytest.approx([2.5, 4.5])  # plain DQN: max


def test_value_iteration_on_a_two_state_mdp_equals_the_closed_form():
    # state 0: a=0 stays (reward 1), a=1 goes to state 1 (reward 0); state 1: either action stays, reward 2
    gamma = 0.9
    R = np.array([[1.0, 0.0], [2.0, 2.0]])
    C = np.zeros((2, 2, 2))
    C[0, 0, 0] = C[0, 1, 1] = C[1, 0, 1] = C[1, 1, 1] = 1.0
    mdp = MDP(R, C, np.array([1.0, 0.0]))
    V, Q, deltas = value_iteration(mdp, gamma, theta=1e-12)
    v1 = 2 / (1 - gamma)  # 20: stay in state 1 forever
    v0 = max(1 / (1 - gamma), gamma * v1)  # 10 by staying, 18 by moving: move
    assert V == pytest.approx([v0, v1], abs=1e-9)
    assert Q[0] == pytest.approx([1 + gamma * v0, gamma * v1], abs=1e-9)
    assert all(b <= a + 1e-15 for a, b in zip(deltas, deltas[1:]))  # a contraction: the change shrinks
    assert policy_evaluation(mdp, Q.argmax(axis=1), gamma) == pytest.approx(V, abs=1e-9)
    assert policy_evaluation(mdp, np.array([0, 0]), gamma)[0] == pytest.approx(10.0)


def test_a_short_cartpole_run_beats_the_random_policy(tmp_path):
    proc = run_dlrun("experiment=dqn_cartpole", "trainer.epochs=3", "env.test_episodes=20", "logger=quiet",
                     f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = read_json(tmp_path / "summary.json")
    rows = read_jsonl(tmp_path / "metrics.jsonl")
    assert rows[-1]["env_steps"] == 3000 and summary["env"] == "CartPole-v1"
    assert summary["best_monitor"] == "val_return_mean"
    assert summary["best_value"] >= 100 and summary["test_return_mean"] >= 60  # the random policy: about 22
    assert (tmp_path / "returns.png").stat().st_size > 10_000
    assert (tmp_path / "checkpoints" / "best.pt").exists()
    for command in (["predict", str(tmp_path), "--split", "test"], ["export", str(tmp_path), "--format", "onnx"]):
        proc = run_dlrun(*command)  # an agent has no inputs to predict from: one line pointing to `dlrun play`
        assert proc.returncode == 2 and "dlrun play RUN" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


@pytest.mark.parametrize("args, message", [
    (["env=CartPole-v1", "env.id=CartPol-v1"], "Did you mean 'CartPole-v1'"),
    (["env=Pendulum-v1"], "continuous action space"),
    (["env=CartPole-v1", "env.id=Blackjack-v1"], "observation space model=dqn cannot read"),
    ([], "model=dqn learns from an environment, not a dataset: add env=NAME"),
    (["env=CartPole-v1", "dataset=digits"], "dataset=digits and env=CartPole-v1"),
    (["env=CartPole-v1", "model.buffer_size=32", "trainer.batch_size=64"], "smaller than trainer.batch_size=64"),
])
def test_bad_inputs_are_one_line_errors_before_any_work(tmp_path, args, message):
    import dlrun
    from dlrun.errors import DlrunError

    with pytest.raises(DlrunError) as err:
        dlrun.run(["model=dqn", *args, "logger=quiet"], run_dir=str(tmp_path / "run"))
    assert message in str(err.value) and "\n" not in str(err.value) and err.value.exit_code == 2
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_bad_inputs_through_the_cli_exit_2_on_one_line(tmp_path):
    assert_clean_error(run_dlrun("model=dqn", "env=CartPol-v1", f"hydra.run.dir={tmp_path}/a"), 2,
                       "unknown env 'CartPol-v1'", "Did you mean 'CartPole-v1'")
    proc = run_dlrun("model=mlp", "env=CartPole-v1", f"hydra.run.dir={tmp_path}/b")
    assert_clean_error(proc, 2, "model=mlp learns from a dataset")
    assert len((proc.stdout + proc.stderr).strip().splitlines()) == 1
    assert_clean_error(run_dlrun("summary", "model=dqn", "env=CartPole-v1"), 2, "learns from an environment")


RESUME = ["model=dqn", "env=CartPole-v1", "trainer.epochs=5", "trainer.steps_per_epoch=700", "trainer.deterministic=true",
          "model.learning_starts=100", "model.train_freq=1", "model.target_update=200", "model.epsilon_steps=1500", "model.hidden=[64,64]",
          "trainer.eval_episodes=3", "env.test_episodes=5", "logger=quiet"]


def test_kill_9_or_sigterm_then_resume_gives_the_uninterrupted_returns(tmp_path):
    full = tmp_path / "full"
    assert run_dlrun(*RESUME, f"hydra.run.dir={full}").returncode == 0
    expected = read_jsonl(full / "metrics.jsonl")
    keys = ["env_steps", "episodes", "train_return_mean", "val_return_mean", "train_loss", "q_mean", "epsilon"]
    for name, sig, code in (("killed", signal.SIGKILL, -9), ("termed", signal.SIGTERM, 143)):
        cut = tmp_path / name
        assert interrupt_after(RESUME, cut, rows=1, sig=sig, env={"OMP_NUM_THREADS": "1"}) == code
        proc = run_dlrun(f"resume={cut}")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        rows = read_jsonl(cut / "metrics.jsonl")
        assert [r["epoch"] for r in rows] == [1, 2, 3, 4, 5]
        assert [r[k] for r in rows for k in keys] == pytest.approx([r[k] for r in expected for k in keys], abs=1e-9)
        assert read_json(cut / "summary.json")["test_return_mean"] == read_json(full / "summary.json")["test_return_mean"]


def test_value_iteration_on_frozenlake_is_optimal_exactly_and_by_sampling(tmp_path):
    import dlrun

    out = dlrun.run(["model=value_iteration", "env=FrozenLake-v1", "env.max_episode_steps=100000", "trainer.epochs=200",
                     "env.test_episodes=2000", "logger=quiet"], run_dir=str(tmp_path / "run"))
    s = out["summary"]
    assert s["status"] == "completed" and s["stop_reason"].startswith("converged")
    optimum = s["last_epoch"]["v_start"]
    assert optimum == pytest.approx(14 / 17, abs=1e-7)  # the slippery 4x4 lake's best success probability, 0.8235
    assert s["test_return_exact"] == pytest.approx(14 / 17, abs=1e-9)  # the greedy policy reaches it
    assert abs(s["test_return_mean"] - optimum) < 4 * (optimum * (1 - optimum) / 2000) ** 0.5
    assert (tmp_path / "run" / "policy.txt").read_text().startswith("← ↑ ↑ ↑\n← H ← H\n↑ ↓ ← H\nH → ↓ G")


def test_a_sweep_over_epsilon_schedules_reports_returns(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_dlrun("-m", "model=dqn", "env=CartPole-v1", "model.epsilon_schedule=linear,exponential",
                     "trainer.epochs=1", "trainer.steps_per_epoch=300", "model.learning_starts=100",
                     "trainer.eval_episodes=2", "logger=quiet", f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = run_dlrun("report", str(sweep), "--metric", "test_return_mean")
    assert report.returncode == 0, report.stderr
    assert "test_return_mean" in report.stdout and "exponential" in report.stdout
    assert "test_return_mean" in (sweep / "report.csv").read_text().splitlines()[0]


def test_a_checkpoint_between_two_episodes_restores_the_environments_generator(tmp_path):
    """Saved just as an episode ended (no observation under way): the next episode's start still comes from the
    environment's own generator, which the checkpoint carries; a resume draws the same start."""
    import torch
    from omegaconf import OmegaConf
    from rich.console import Console

    from dlrun.config.composition import compose
    from dlrun.rl.build import build_env_job

    cfg = compose([*RESUME])
    cfg = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])

    def loop():
        return build_env_job(cfg, tmp_path / "run", torch.device("cpu"), Console(quiet=True)).trainer.loop

    first = loop()
    while first.episodes < 3 or first.obs is not None:  # past two resets, stopped right at an episode's end
        first._env_step()
    state = first.state_dict()
    second = loop()
    second.load_state_dict(state)
    for _ in range(60):  # into the next episode, whose start the generator draws
        first._env_step()
        second._env_step()
        assert torch.equal(first.obs if first.obs is not None else torch.zeros(1),
                           second.obs if second.obs is not None else torch.zeros(1))


def test_an_atari_smoke_run_with_the_nature_cnn(tmp_path):
    """Pong through ale-py (ROMs in its wheel): gymnasium's Atari preprocessing, 4 stacked 84x84 frames kept uint8
    in the replay buffer, the Nature-DQN network; a few hundred steps, updates after the first hundred."""
    pytest.importorskip("ale_py", reason="ale-py is not installed (pip install '.[atari]')")
    pytest.importorskip("cv2", reason="opencv-python-headless is not installed (pip install '.[atari]')")
    proc = run_dlrun("experiment=dqn_pong", "device=cpu", "trainer.epochs=1", "trainer.steps_per_epoch=300",
                     "model.buffer_size=1000", "model.learning_starts=100", "trainer.eval_episodes=1",
                     "env.test_episodes=1", "env.max_episode_steps=400", "logger=quiet", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary, row = read_json(tmp_path / "summary.json"), read_jsonl(tmp_path / "metrics.jsonl")[-1]
    # Nature DQN (Mnih et al. 2015) for Pong's 6 actions: 32 8x8/4, 64 4x4/2, 64 3x3/1 convolutions, 512, 6
    conv = (4 * 64 * 32 + 32) + (32 * 16 * 64 + 64) + (64 * 9 * 64 + 64)
    assert summary["params"] == conv + (64 * 7 * 7 * 512 + 512) + (512 * 6 + 6)
    assert summary["env"] == "ALE/Pong-v5" and row["env_steps"] == 300
    assert row["step"] == (300 - 100) // 4 and np.isfinite(row["train_loss"])  # an update every 4 steps after 100
    assert -21 <= summary["test_return_mean"] <= 21
    replay = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)["replay"]
    assert replay["obs"].dtype == torch.uint8 and tuple(replay["obs"].shape) == (300, 4, 84, 84)
