#!/usr/bin/env bash
# Study 3: weight initialisation x activation on the digits MLP (5 hidden layers of 64 so depth matters), Adam, 10 epochs.
set -euo pipefail
cd "$(dirname "$0")/../.."
here=experiments/init_activation
rm -rf $here/sweep
.venv/bin/dlrun -m model.init=zeros,lecun,he,glorot_uniform,glorot_normal,normal,uniform,truncated_normal \
  model.activation=sigmoid,tanh,relu,leaky_relu,elu,gelu,maxout model.hidden=[64,64,64,64,64] \
  trainer.epochs=10 seed=0 logger=quiet hydra.sweep.dir=$here/sweep
.venv/bin/python experiments/summarize.py $here/sweep --grid model.init model.activation \
  --title "Initialisation x activation (digits, MLP 5x64, Adam 1e-3, 10 epochs)" > $here/results.md
