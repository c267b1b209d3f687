#!/usr/bin/env bash
# Trains the release models shipped in shared/release/ (addressable by name, e.g.
# `--checkpoint fmnist-gpt`) with their presets and seed 0, on builtin:fashion-mnist, then copies
# their exported folders there. CPU: about 5 hours of one-thread runs (times in the README).
# Usage: bash scripts/train_release.sh [RUNS_DIR]   (default runs/release)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-runs/release}
TS=${TWOSTAGE:-.venv/bin/twostage}
mkdir -p "$RUNS"
export HF_HUB_OFFLINE=1

$TS vqgan train --config vqgan-fmnist --output "$RUNS/fmnist-vqgan" --seed 0
$TS prior train --config gpt-fmnist --tokenizer "$RUNS/fmnist-vqgan" \
    --output "$RUNS/fmnist-gpt" --seed 0
$TS prior train --config adatgan-prior-fmnist --tokenizer "$RUNS/fmnist-vqgan" \
    --output "$RUNS/fmnist-adatgan" --seed 0
$TS gan train --config dcgan-fmnist --output "$RUNS/fmnist-dcgan" --seed 0
$TS gan train --config adatgan-fmnist --output "$RUNS/fmnist-adatgan-pixel" --seed 0

bash scripts/export_release.sh "$RUNS"
