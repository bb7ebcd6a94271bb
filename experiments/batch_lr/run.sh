#!/usr/bin/env bash
# Study 2: batch size (1 = stochastic, 32, 128, full = batch gradient descent) x learning rate, plain SGD, digits MLP, 10 epochs.
set -euo pipefail
cd "$(dirname "$0")/../.."
here=experiments/batch_lr
rm -rf $here/sweep
.venv/bin/dlrun -m optimizer=sgd trainer.batch_size=1,32,128,full optimizer.lr=0.3,0.1,0.01,0.001 \
  trainer.epochs=10 seed=0 logger=quiet hydra.sweep.dir=$here/sweep
.venv/bin/python experiments/summarize.py $here/sweep --grid trainer.batch_size optimizer.lr \
  --title "Batch size x learning rate (SGD, digits MLP 256-128, 10 epochs)" > $here/results.md
