#!/usr/bin/env bash
# Every optimizer config on the default MLP and digits, same seed and epochs, one sweep; then the table and plot.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=experiments/optimizers_digits/sweep
rm -rf "$out"
.venv/bin/dlrun -m optimizer=sgd,momentum,nesterov,adagrad,adadelta,rmsprop,adam,adamw \
  trainer.epochs=20 seed=0 logger=quiet hydra.sweep.dir="$out"
.venv/bin/python experiments/summarize.py "$out" --title "Optimizers on digits (MLP 256-128, 20 epochs, batch 64)" \
  > experiments/optimizers_digits/results.md
