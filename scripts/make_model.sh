#!/usr/bin/env bash
# Rebuild the default finetuned model, models/toolrun-smollm2-135m-calc/ (`make model`).
# The exact recipe of the committed adapter; MODEL_CARD.md there has the numbers and timings.
# About an hour on a 2-core CPU. CI does not run it. The last 200 GSM8K train problems are the
# held-out slice that scores the annotator: they are never annotated for training.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DATA=${DATA:-../shared/data/gsm8k_train}
WORK=${WORK:-build/model}
OUT=${OUT:-models/toolrun-smollm2-135m-calc}
TRAIN_TEXTS=${TRAIN_TEXTS:-300}     # first N problems (the held-out slice is the last 200)
THREADS=${THREADS:-1}               # 1 thread beat 2 on the busy shared machine it was made on
TOOLRUN="$PY -m toolrun.cli"
mkdir -p "$WORK" "$OUT"

# 1. Annotate: Calculator and Calendar, calls inline, kept by gain = L_noresult - L+ (stored
#    losses let step 2 re-select at any threshold). Resumes if interrupted.
$TOOLRUN annotate "$DATA" --limit "$TRAIN_TEXTS" --tools calculator,calendar \
  --placement inline --criterion gain --tau-f 1.0 --threads "$THREADS" \
  -o "$WORK/train.jsonl"

# 2. LoRA finetune on every annotated text: Calculator calls re-selected at the tau_f chosen on
#    the held-out slice; Calendar calls left out (GSM8K never needs one; see the model card).
$TOOLRUN finetune "$WORK/train.jsonl" --criterion gain --tau-f "${TAU_F:-0.5}" \
  --tools calculator --epochs "${EPOCHS:-2}" --batch-size 8 --lr 3e-4 --lora-r 8 --lora-alpha 16 \
  --max-length 320 --seed 0 --threads "$THREADS" -o "$WORK/adapter"
cp "$WORK/adapter/adapter_model.safetensors" "$WORK/adapter/adapter_config.json" \
  "$WORK/adapter/training.json" "$OUT/"

# 3. Score the annotator on the held-out slice (never used for training), both placements.
$TOOLRUN annotate "$DATA" --last 200 --tools calculator --placement inline \
  --threads "$THREADS" -o "$WORK/heldout_inline.jsonl"
$TOOLRUN annotate "$DATA" --last "${PREFIX_HELDOUT:-50}" --tools calculator --placement prefix \
  --threads "$THREADS" -o "$WORK/heldout_prefix.jsonl"
$TOOLRUN score-annotations "$WORK/heldout_inline.jsonl" "$WORK/heldout_prefix.jsonl"
