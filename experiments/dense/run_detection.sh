#!/usr/bin/env bash
# Detection: model=yolov1 task=detection on 64x64 canvases of scikit-learn digits (dataset=canvas), one core.
#   bash experiments/dense/run_detection.sh          both runs (about 10 minutes on a free core)
#   bash experiments/dense/run_detection.sh one      one digit per canvas
#   bash experiments/dense/run_detection.sh three    one to three digits per canvas
#   bash experiments/dense/run_detection.sh fashion  one to three Fashion-MNIST items (Debian's dataset-fashion-mnist)
# Results: experiments/dense/detection.md (numbers from each run's summary.json, written by hand).
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
DLRUN=${DLRUN:-.venv/bin/dlrun}
out=experiments/dense/sweep
what=${1:-all}
dl() { $DLRUN model=yolov1 task=detection dataset=canvas scheduler=cosine logger=quiet trainer.summary=false "$@"; }
if [ "$what" = all ] || [ "$what" = one ]; then
  dl dataset.objects=1 trainer.epochs=15 optimizer.lr=0.002 hydra.run.dir=$out/detection_one_digit
fi
if [ "$what" = all ] || [ "$what" = three ]; then
  dl dataset.objects=3 trainer.epochs=25 optimizer.lr=0.002 hydra.run.dir=$out/detection_three_digits
fi
if [ "$what" = fashion ]; then
  dl dataset.source=fashion_mnist dataset.objects=3 trainer.epochs=25 optimizer.lr=0.002 \
    hydra.run.dir=$out/detection_three_fashion
fi
