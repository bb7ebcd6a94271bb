#!/usr/bin/env bash
# Your own data: scikit-learn's bundled tables as CSV files and Fashion-MNIST as an image folder, trained from the files.
set -euo pipefail
cd "$(dirname "$0")/../.."
.venv/bin/python experiments/own_data/run.py
