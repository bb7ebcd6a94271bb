#!/usr/bin/env bash
# Sequence to sequence: the transformer encoder-decoder on generated tasks and FreeDict, and the RNN it replaced.
#   bash experiments/seq2seq/run.sh             everything (about an hour on one core)
#   bash experiments/seq2seq/run.sh recipes     the three recipes: dates, numbers, reverse of 20 (about 7 minutes)
#   bash experiments/seq2seq/run.sh attention   reverse of 10, 20, 40 letters: rnn with and without attention, transformer
#   bash experiments/seq2seq/run.sh freedict    English -> Spanish FreeDict headwords, in characters (dict-freedict-eng-spa)
# Results: experiments/seq2seq/results.md (numbers from each run's summary.json and samples.txt, written by hand).
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
DLRUN=${DLRUN:-.venv/bin/dlrun}
out=experiments/seq2seq/sweep
what=${1:-all}
dl() { nice -n 19 $DLRUN "$@" logger=quiet trainer.summary=false; }
if [ "$what" = all ] || [ "$what" = recipes ]; then
  for r in dates numbers reverse; do dl experiment=seq2seq_$r hydra.run.dir=$out/$r; done
  $DLRUN predict $out/dates --text "3 de marzo de 2021"
  $DLRUN predict $out/numbers --text "mil doscientos treinta y cuatro"
fi
if [ "$what" = all ] || [ "$what" = attention ]; then
  # 5000 sequences (4000 to train), 10 epochs for the rnn; one seed
  rev="experiment=seq2seq_reverse dataset.n_samples=5000 dataset.length=10,20,40"
  dl -m $rev model.kind=rnn model.attention=luong,none trainer.epochs=10 hydra.sweep.dir=$out/attention_rnn
  dl -m $rev trainer.epochs=3 hydra.sweep.dir=$out/attention_transformer
fi
if [ "$what" = all ] || [ "$what" = freedict ]; then
  fd="model=seq2seq dataset=pairs dataset.source=freedict dataset.max_source=24 dataset.max_target=24 loss=cross_entropy
      loss.label_smoothing=0.1 trainer.checkpoint.monitor=val_loss"
  dl $fd trainer.epochs=40 model.dropout=0.3 hydra.run.dir=$out/freedict_transformer
  dl $fd trainer.epochs=40 model.dropout=0.3 model.kind=rnn hydra.run.dir=$out/freedict_rnn
fi
for d in "$out"/attention_*/; do [ -d "$d" ] && $DLRUN report "$d" > /dev/null; done
