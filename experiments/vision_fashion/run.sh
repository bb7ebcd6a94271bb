#!/usr/bin/env bash
# Vision models on Fashion-MNIST (Debian's dataset-fashion-mnist: 54k train / 6k val / 10k test) on the CPU,
# one run after the other, niced (2 shared cores); then every vision model on digits in one sweep.
#   bash experiments/vision_fashion/run.sh                 everything
#   bash experiments/vision_fashion/run.sh fashion [N ...]  the Fashion-MNIST runs (or only jobs N ...)
#   bash experiments/vision_fashion/run.sh digits           the digits sweep
set -euo pipefail
set -f  # overrides hold [brackets]: no filename globbing
cd "$(dirname "$0")/../.."
# One thread by default: on 2 cores shared with other work, two OpenMP threads at nice 19 mostly wait on each other.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
out=experiments/vision_fashion/sweep
what=${1:-all}
shift || true
JOBS=(  # cosine schedule, batch 128, seed 0 unless a job sets another; test accuracy with the best.pt weights
  "model=lenet5 optimizer=adam trainer.epochs=10"
  "model=cnn_seed2x optimizer=adam trainer.epochs=5"
  "model=resnet optimizer=adam optimizer.lr=0.002 trainer.epochs=4"
  "model=lenet5 model.norm=batch optimizer=adam trainer.epochs=15"
  "model=lenet5 model.norm=batch model.dropout=0.25 optimizer=adam optimizer.lr=0.002 trainer.epochs=25"
  "model=lenet5 model.norm=batch optimizer=nesterov optimizer.lr=0.05 optimizer.weight_decay=0.0005 trainer.epochs=30"
  "model=lenet5 model.norm=batch optimizer=adam optimizer.lr=0.002 dataset.augment=[translation:0.1] trainer.epochs=20"
  "model=cnn model.channels=[32,64] model.kernel=3 model.hidden=[128] model.norm=batch model.dropout=0.25 optimizer=adam dataset.augment=[translation:0.1,hflip] trainer.epochs=12"
  "model=resnet optimizer=adam optimizer.lr=0.002 dataset.augment=[translation:0.1,hflip] trainer.epochs=8"
  "model=lenet5 model.norm=batch optimizer=adam optimizer.lr=0.002 dataset.augment=[hflip] trainer.checkpoint.monitor=val_accuracy trainer.epochs=25"
  "model=resnet optimizer=adam optimizer.lr=0.002 dataset.augment=[hflip] trainer.checkpoint.monitor=val_accuracy trainer.epochs=12"
  "model=resnet optimizer=adam optimizer.lr=0.002 dataset.augment=[hflip] trainer.checkpoint.monitor=val_accuracy trainer.epochs=12 seed=1"
  "model=resnet optimizer=adam optimizer.lr=0.002 dataset.augment=[hflip] trainer.checkpoint.monitor=val_accuracy trainer.epochs=15 seed=1"
)
fashion() {  # runs land in sweep/fashion/N like a multirun's jobs, for experiments/summarize.py
  local dir=$out/fashion/$1
  rm -rf "$dir"
  # shellcheck disable=SC2086
  nice -n 19 .venv/bin/dlrun dataset=fashion_mnist scheduler=cosine trainer.batch_size=128 seed=0 \
    logger=quiet ${JOBS[$1]} hydra.run.dir="$dir"
}
if [ "$what" = all ] || [ "$what" = fashion ]; then
  for n in "${@:-${!JOBS[@]}}"; do fashion "$n"; done
  .venv/bin/python experiments/summarize.py $out/fashion --title "Vision models on Fashion-MNIST (CPU, 2 shared cores)" \
    > experiments/vision_fashion/fashion_table.md
fi
if [ "$what" = all ] || [ "$what" = digits ]; then
  rm -rf "$out/digits"
  # every vision model with dlrun's defaults (20 epochs, Adam 1e-3, batch 64); tv: torchvision's resnet18
  nice -n 19 .venv/bin/dlrun -m model=perceptron,mlp,lenet5,cnn,cnn_seed2x,cnn_seed3x,vgg,resnet,inception,sequential,sequential_seed_conv,tv \
    seed=0 logger=quiet hydra.sweep.dir="$out/digits"
  .venv/bin/python experiments/summarize.py $out/digits --title "Vision models on digits (8x8, 20 epochs, Adam 1e-3, batch 64)" \
    > experiments/vision_fashion/digits_table.md
fi
