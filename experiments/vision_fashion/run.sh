#!/usr/bin/env bash
# Vision models on Fashion-MNIST (Debian's dataset-fashion-mnist, 54k train / 6k val / 10k test) on the CPU,
# one run after the other, niced (2 shared cores); then every vision model on digits in one sweep.
#   bash experiments/vision_fashion/run.sh [fashion|digits]     (both by default)
set -euo pipefail
cd "$(dirname "$0")/../.."
out=experiments/vision_fashion/sweep
what=${1:-all}
fashion() {  # job number, then overrides; runs land in sweep/fashion/N like a multirun's jobs
  local dir=$out/fashion/$1; shift
  rm -rf "$dir"
  nice -n 19 .venv/bin/dlrun dataset=fashion_mnist trainer.batch_size=128 optimizer=adam scheduler=cosine seed=0 \
    logger=quiet "$@" hydra.run.dir="$dir"
}
if [ "$what" != digits ]; then
  fashion 0 model=lenet5 trainer.epochs=15
  fashion 1 model=lenet5 model.norm=batch trainer.epochs=15
  fashion 2 model=cnn_seed2x trainer.epochs=8
  fashion 3 model=resnet optimizer.lr=0.002 trainer.epochs=4
  .venv/bin/python experiments/summarize.py $out/fashion --title "Vision models on Fashion-MNIST (CPU, 2 shared cores)" \
    > experiments/vision_fashion/fashion_table.md
fi
if [ "$what" != fashion ]; then
  rm -rf "$out/digits"
  # the settings tests/test_models.py uses (model presets and overrides per model live there too)
  nice -n 19 .venv/bin/dlrun -m model=perceptron,mlp,lenet5,cnn,cnn_seed2x,cnn_seed3x,vgg,resnet,inception,sequential,sequential_seed_conv \
    trainer.epochs=20 seed=0 logger=quiet hydra.sweep.dir="$out/digits"
  .venv/bin/python experiments/summarize.py $out/digits --title "Vision models on digits (8x8, 20 epochs, Adam 1e-3, batch 64)" \
    > experiments/vision_fashion/digits_table.md
fi
