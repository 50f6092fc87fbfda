#!/usr/bin/env bash
# Rebuild the default finetuned model's adapter, toolrun/adapters/toolrun-smollm2-135m-calc/
# (`make model`); it ships inside the toolrun package, so installed copies have it too.
# The exact recipe of the committed adapter; its MODEL_CARD.md has the numbers and timings.
# About 70 minutes on a busy 2-core CPU (45 for the model itself); CI does not run it.
# The last 200 GSM8K train problems are the held-out slice that scores the annotator: they
# are never annotated for training.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DATA=${DATA:-../shared/data/gsm8k_train}
WORK=${WORK:-build/model}
OUT=${OUT:-toolrun/adapters/toolrun-smollm2-135m-calc}
TRAIN_TEXTS=${TRAIN_TEXTS:-400}     # the first N problems
THREADS=${THREADS:-1}               # 1 torch thread beat 2 on the busy machine it was made on
TOOLRUN="$PY -m toolrun.cli"
mkdir -p "$WORK" "$OUT"

# 1. Annotate the training texts with Calculator calls: proposers + consistency and copied-number
#    heuristics, calls inline, losses stored for every candidate. Resumes if interrupted.
$TOOLRUN annotate "$DATA" --limit "$TRAIN_TEXTS" --tools calculator --placement inline \
  --criterion gain --tau-f 1.0 --threads "$THREADS" -o "$WORK/train.jsonl"

# 1b. The Calendar on a small sample (stats for the card; GSM8K never needs a date). tau_s 0 as
#     the card's run had it (the paper's 0.05 for the Calendar keeps no position for a 135M model).
$TOOLRUN annotate "$DATA" --limit 22 --tools calculator,calendar --placement inline \
  --criterion gain --tau-f 1.0 --tau-s 0 --threads "$THREADS" -o "$WORK/calendar_sample.jsonl"

# 2. Score the annotator on the held-out slice, both placements, every criterion and tau_f.
$TOOLRUN annotate "$DATA" --last 200 --tools calculator --placement inline \
  --threads "$THREADS" -o "$WORK/heldout_inline.jsonl"
$TOOLRUN annotate "$DATA" --last "${PREFIX_HELDOUT:-200}" --tools calculator --placement prefix \
  --threads "$THREADS" -o "$WORK/heldout_prefix.jsonl"
$TOOLRUN score-annotations "$WORK/heldout_inline.jsonl" "$WORK/heldout_prefix.jsonl"

# 3. LoRA finetune on all training texts, Calculator calls re-selected from the stored losses
#    with the held-out-chosen criterion and tau_f (gain, 0.5). On transformers' Trainer since
#    0.2: the same steps to the bit as the loop the adapter was made with (first-step loss
#    1.8736356496810913 both ways); checkpoints in $WORK/adapter/checkpoints, resumed on rerun.
$TOOLRUN finetune "$WORK/train.jsonl" --criterion gain --tau-f "${TAU_F:-0.5}" \
  --tools calculator --epochs 1.5 --batch-size 8 --lr 5e-4 --lora-r 8 --lora-alpha 16 \
  --max-length 384 --seed 0 --threads "$THREADS" -o "$WORK/adapter"
cp "$WORK/adapter/adapter_model.safetensors" "$WORK/adapter/adapter_config.json" \
  "$WORK/adapter/training.json" "$OUT/"
