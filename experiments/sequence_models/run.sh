#!/usr/bin/env bash
# Sequence models: rnn, lstm, gru and transformer on problems that need memory, and Fashion-MNIST read row by row.
#   bash experiments/sequence_models/run.sh            everything (about an hour on one core)
#   bash experiments/sequence_models/run.sh adding     the adding problem (length 20 and 50, two seeds)
#   bash experiments/sequence_models/run.sh recall     recall of the first symbol (length 20)
#   bash experiments/sequence_models/run.sh fashion    Fashion-MNIST as 28 steps of 28 pixels
# Results: experiments/sequence_models/results.md (tables from each sweep's report.csv, written by hand).
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
out=experiments/sequence_models/sweep
what=${1:-all}
dl() { nice -n 19 .venv/bin/dlrun "$@"; }
seq="dataset=sequences dataset.n_samples=5000 optimizer=adam optimizer.lr=0.003 trainer.epochs=30 logger=quiet"
if [ "$what" = all ] || [ "$what" = adding ]; then
  dl -m $seq model=rnn,lstm,gru model.hidden=64 dataset.length=20,50 seed=0,1 hydra.sweep.dir=$out/adding_recurrent
  dl -m $seq model=transformer dataset.length=20,50 seed=0,1 hydra.sweep.dir=$out/adding_transformer
fi
if [ "$what" = all ] || [ "$what" = recall ]; then
  dl -m $seq dataset.kind=recall dataset.length=20 model=rnn,lstm,gru model.hidden=64 hydra.sweep.dir=$out/recall_recurrent
  dl -m $seq dataset.kind=recall dataset.length=20 model=transformer model.pos=sinusoidal,none hydra.sweep.dir=$out/recall_transformer
fi
if [ "$what" = all ] || [ "$what" = fashion ]; then
  fash="dataset=fashion_mnist optimizer=adam optimizer.lr=0.002 scheduler=cosine trainer.batch_size=128 trainer.epochs=8 logger=quiet"
  dl -m $fash model=lstm,gru model.hidden=128 hydra.sweep.dir=$out/fashion_recurrent
  dl -m $fash model=transformer hydra.sweep.dir=$out/fashion_transformer
fi
for d in "$out"/*/; do .venv/bin/dlrun report "$d" > /dev/null; done
