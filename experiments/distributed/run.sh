#!/usr/bin/env bash
# Seed 002's distributed strategies side by side on Fashion-MNIST (experiments/distributed/results.md).
# Run from the repository root: bash experiments/distributed/run.sh. About 10 minutes on a 2-core CPU.
# One torch thread per process; the global batch is 128 in every case (64 per worker with two workers).
set -euo pipefail
export OMP_NUM_THREADS=1
OUT=${OUT:-experiments/distributed/runs}  # git-ignored
COMMON="dataset=fashion_mnist model=mlp trainer.epochs=${EPOCHS:-5} optimizer=sgd optimizer.lr=0.05 logger=quiet trainer.summary=false"
run() { local name=$1; shift; rm -rf "$OUT/$name"; dlrun $COMMON "$@" hydra.run.dir="$OUT/$name"; }
# torchrun: three processes (a parameter server and two workers) are more than dlrun's trainer.devices allows
# on two cores; torchrun starts them itself
ps() { local name=$1; shift; rm -rf "$OUT/$name"
       torchrun --standalone --nproc_per_node=3 "$(command -v dlrun)" $COMMON trainer.strategy=param_server "$@" \
         hydra.run.dir="$OUT/$name"; }

run one_process        trainer.batch_size=128
run ddp                trainer.batch_size=64 trainer.devices=2
run local_sgd_8        trainer.batch_size=64 trainer.devices=2 trainer.strategy=local_sgd trainer.average_every=8
run local_sgd_64       trainer.batch_size=64 trainer.devices=2 trainer.strategy=local_sgd trainer.average_every=64
ps  param_server       trainer.batch_size=64
# the slowest worker: the last rank sleeps 5 ms after each of its steps
run ddp_slow           trainer.batch_size=64 trainer.devices=2 trainer.slow_rank_delay_ms=5
run local_sgd_8_slow   trainer.batch_size=64 trainer.devices=2 trainer.strategy=local_sgd trainer.average_every=8 trainer.slow_rank_delay_ms=5
ps  param_server_slow  trainer.batch_size=64 trainer.slow_rank_delay_ms=5
python experiments/distributed/summarize.py "$OUT"
