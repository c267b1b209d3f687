#!/usr/bin/env bash
# Copies the exported model folders of the release runs into shared/release/NAME/ (the tokenizer
# and priors as exported; only the EMA generator of the pixel GANs).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-runs/release}
DEST=shared/release
for name in fmnist-vqgan fmnist-gpt fmnist-adatgan; do
  rm -rf "${DEST:?}/$name" && mkdir -p "$DEST" && cp -r "$RUNS/$name/model" "$DEST/$name"
done
for name in fmnist-dcgan fmnist-adatgan-pixel; do
  rm -rf "${DEST:?}/$name" && cp -r "$RUNS/$name/model/generator" "$DEST/$name"
done
du -sh "$DEST"/*
