#!/usr/bin/env bash
# Study 1: the nine optimizers, each at its best learning rate (chosen on validation loss), on digits
# (MLP 256-128, 20 epochs, batch 64) and Fashion-MNIST (MLP 256-128, 3 epochs, batch 64).
# Some learning rates diverge on purpose (the grid brackets each optimizer's best): dlrun reports
# those jobs as failed and exits 1, so the sweep's exit code is not fatal here.
set -euo pipefail
cd "$(dirname "$0")/../.."
here=experiments/optimizers_digits
opts=gd,sgd,momentum,nesterov,adagrad,adadelta,rmsprop,adam,adamw
rm -rf $here/sweep $here/fashion
.venv/bin/dlrun -m optimizer=$opts optimizer.lr=1.0,0.3,0.1,0.03,0.01,0.003,0.001 \
  trainer.epochs=20 seed=0 logger=quiet hydra.sweep.dir=$here/sweep || echo "(some learning rates diverged)"
.venv/bin/python experiments/summarize.py $here/sweep --best-per optimizer \
  --title "Optimizers on digits (MLP 256-128, 20 epochs, batch 64, gd = full batch)" > $here/results.md
.venv/bin/dlrun report $here/sweep --top 12   # every job: sweep/report.csv, curves.png, grid.png
cp $here/sweep/grid.png $here/grid.png        # test accuracy against the learning rate, one line per optimizer
if [ -d /usr/share/datasets/fashion-mnist ]; then
  .venv/bin/dlrun -m dataset=fashion_mnist optimizer=$opts optimizer.lr=0.3,0.03,0.003 \
    trainer.epochs=3 seed=0 logger=quiet hydra.sweep.dir=$here/fashion/sweep || echo "(some learning rates diverged)"
  .venv/bin/python experiments/summarize.py $here/fashion/sweep --best-per optimizer \
    --title "Optimizers on Fashion-MNIST (MLP 256-128, 3 epochs, batch 64)" > $here/results_fashion.md
fi
