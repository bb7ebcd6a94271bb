#!/usr/bin/env bash
# Study 4: an over-parameterised MLP (512-512) on 150 training digits: none vs L2 vs dropout vs batch norm vs early stopping.
set -euo pipefail
cd "$(dirname "$0")/../.."
here=experiments/regularisation
rm -rf $here/sweep
common="model.hidden=[512,512] dataset.train_subset=150 trainer.epochs=150 trainer.batch_size=32 seed=0 logger=quiet"
i=0
for reg in "trainer.l2=0.0" "trainer.l2=5.0" "model.dropout=0.5" "model.norm=batch" "trainer.early_stopping.patience=10"; do
  .venv/bin/dlrun $common $reg hydra.run.dir=$here/sweep/$i
  i=$((i+1))
done
.venv/bin/python experiments/summarize.py $here/sweep \
  --title "Regularisation (MLP 512-512, 150 training digits, 150 epochs)" > $here/results.md
