"""dlrun's DQN and Stable-Baselines3's on CartPole-v1, in one run: the same RL Zoo hyperparameters, seeds taken in
turn (dlrun then SB3 for even seeds, SB3 then dlrun for odd ones, so neither always runs on the quieter machine).

For each: the environment steps until the first evaluation (10 greedy episodes, every 1,000 steps) averages
>= 475, and the training time per 10,000 steps *without* those evaluations (dlrun: the sum of its epochs'
`epoch_time`; SB3: `learn()` less the time its EvalCallback spent). Prints a Markdown table.

    OMP_NUM_THREADS=1 .venv/bin/python experiments/rl/side_by_side.py --sb3-python /tmp/sb3venv/bin/python 0 1 2

SB3 lives in its own throwaway environment (see sb3_cartpole.py); it is never a dlrun dependency.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
STEPS = 50_000


def run_dlrun(seed: int, folder: Path) -> dict:
    dlrun = Path(sys.executable).with_name("dlrun")
    subprocess.run([str(dlrun), "experiment=dqn_cartpole", f"seed={seed}", "logger=quiet",
                    f"hydra.run.dir={folder}"], check=True, cwd=ROOT)
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines() if line.strip()]
    solved = [r["env_steps"] for r in rows if r.get("val_return_mean") is not None and r["val_return_mean"] >= 475]
    summary = json.loads((folder / "summary.json").read_text())
    return {"solved_at": solved[0] if solved else None, "train_s": sum(r["epoch_time"] for r in rows),
            "test": summary["test_return_mean"]}


def run_sb3(seed: int, python: str) -> dict:
    out = subprocess.run([python, str(HERE / "sb3_cartpole.py"), str(seed)], check=True, cwd=ROOT,
                         capture_output=True, text=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    return {"solved_at": result["solved_at"], "train_s": result["train_s"], "test": result["best_mean"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--sb3-python", default="/tmp/sb3venv/bin/python")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            order = ["dlrun", "sb3"] if seed % 2 == 0 else ["sb3", "dlrun"]
            result = {}
            for who in order:
                result[who] = run_dlrun(seed, Path(tmp) / f"s{seed}") if who == "dlrun" else run_sb3(seed, args.sb3_python)
                print(f"seed {seed} {who}: {result[who]}", file=sys.stderr, flush=True)
            rows.append((seed, result))
    per10k = {who: [r[who]["train_s"] / (STEPS / 10_000) for _, r in rows] for who in ("dlrun", "sb3")}
    print("| seed | dlrun: steps to solve | SB3: steps to solve | dlrun: s per 10k steps | SB3: s per 10k steps "
          "| dlrun best.pt, 100 episodes | SB3 best model, 100 episodes |")
    print("|---|---|---|---|---|---|---|")
    for (seed, r), d, s in zip(rows, per10k["dlrun"], per10k["sb3"]):
        print(f"| {seed} | {r['dlrun']['solved_at']} | {r['sb3']['solved_at']} | {d:.1f} | {s:.1f} "
              f"| {r['dlrun']['test']:.1f} | {r['sb3']['test']:.1f} |")
    ratio = [d / s for d, s in zip(per10k["dlrun"], per10k["sb3"])]
    print(f"\ntime per 10k steps, dlrun / SB3: median {statistics.median(ratio):.2f} "
          f"(min {min(ratio):.2f}, max {max(ratio):.2f})")


if __name__ == "__main__":
    main()
