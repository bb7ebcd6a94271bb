"""`dlrun play RUN [--episodes N] [--record FILE.gif] [--checkpoint best|last|PATH] [--seed S]`: a trained
reinforcement-learning run's greedy policy played for N episodes, its returns reported; `--record` writes the
frames of the first episode as a GIF."""
from __future__ import annotations

import argparse
from pathlib import Path

from dlrun.errors import DlrunError, report_error


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="dlrun play", description="Play a trained agent's greedy policy (a run with "
                                 "env=...): the return and length of each episode, then their mean.")
    ap.add_argument("run", type=Path, help="the run folder")
    ap.add_argument("--episodes", type=int, default=10, help="episodes to play (default 10)")
    ap.add_argument("--record", type=Path, help="write the first episode's frames to this GIF file")
    ap.add_argument("--checkpoint", default="best", help="best (default), last, or a checkpoint file")
    ap.add_argument("--seed", type=int, default=None, help="the first episode's seed (default: the run's seed + 3000000)")
    return ap.parse_args(argv)


def load_agent(run: Path, checkpoint: str):
    """(the run's loop with the checkpoint's weights, its config) from RUN/checkpoints/{best,last}.pt."""
    import torch
    from omegaconf import OmegaConf

    from dlrun.config.schema import Trainer as TrainerSettings
    from dlrun.config.schema import settings
    from dlrun.rl.build import AGENTS
    from dlrun.train.checkpoint import load_checkpoint

    path = Path(checkpoint) if checkpoint not in ("best", "last") else run / "checkpoints" / f"{checkpoint}.pt"
    state = load_checkpoint(path)
    cfg = OmegaConf.create(state.get("config") or {})
    if cfg.get("env") is None or cfg.model.name not in AGENTS:
        raise DlrunError(f"{run} is not a reinforcement-learning run (it has no env=...); `dlrun predict {run}` "
                         "uses a supervised run")
    loop = AGENTS[cfg.model.name](cfg, settings(TrainerSettings, cfg.trainer), torch.device("cpu"))
    loop.model.load_state_dict(state["model"])
    loop.model.eval()
    return loop, cfg


def record(loop, cfg, path: Path, seed: int) -> int:
    """One greedy episode rendered frame by frame into a GIF; its length."""
    import os

    from PIL import Image

    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # pygame draws off-screen: no display needed

    from dlrun.rl import env as envs

    env = envs.make(cfg.env, render=True)
    obs, _ = env.reset(seed=seed)
    frames, done = [env.render()], False
    while not done:
        obs, _, term, trunc, _ = env.step(loop.policy([obs])[0])
        frames.append(env.render())
        done = term or trunc
    env.close()
    images = [Image.fromarray(f) for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=33, loop=0)
    return len(frames) - 1


def play_command(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        if args.episodes < 1:
            raise DlrunError("--episodes must be a positive integer")
        import torch

        from dlrun.rl.dqn import episode_metrics, run_episodes

        loop, cfg = load_agent(args.run, args.checkpoint)
        seed = cfg.seed + 3_000_000 if args.seed is None else args.seed
        with torch.no_grad():
            returns, lengths = run_episodes(loop.policy, loop.make_env, args.episodes, seed)
        for i, (r, n) in enumerate(zip(returns, lengths)):
            print(f"episode {i + 1}: return {r:g}, length {n}")
        m = episode_metrics("play", returns, lengths)
        print(f"{cfg.model.name} on {cfg.env.id}, {args.episodes} episodes: mean return {m['play_return_mean']:.4g} "
              f"(std {m['play_return_std']:.3g}, min {m['play_return_min']:g}, max {m['play_return_max']:g}), "
              f"mean length {m['play_length_mean']:.4g}")
        if args.record:
            steps = record(loop, cfg, args.record, seed)
            print(f"wrote {args.record} ({steps} steps)")
    except DlrunError as exc:
        return report_error(exc)
    return 0
