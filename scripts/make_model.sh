#!/usr/bin/env bash
# Rebuild the default finetuned model's adapter, toolrun/adapters/toolrun-smollm2-135m-calc/
# (`make model`); it ships inside the toolrun package, so installed copies have it too.
# Version 0.5, "one-line answers": scripts/make_model_line.sh's defaults (GSM8K's two-step
# problems written as one composed expression, generated one-step problems, the 400 dated texts),
# then the adapter copied into the package. Its MODEL_CARD.md has the numbers and timings. About
# an hour on a 2-core CPU; CI does not run it. The recipe of 0.3, the adapter before it, is
# scripts/make_model_03.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${WORK:-build/model_line3}
OUT=${OUT:-toolrun/adapters/toolrun-smollm2-135m-calc}
WORK="$WORK" bash scripts/make_model_line.sh
mkdir -p "$OUT"
cp "$WORK/adapter/adapter_model.safetensors" "$WORK/adapter/adapter_config.json" \
  "$WORK/adapter/training.json" "$OUT/"
