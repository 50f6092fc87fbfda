#!/usr/bin/env bash
# A candidate default adapter with two tools, NOT the shipped one: the Calculator on 2,000 GSM8K
# texts plus the Calendar on 400 generated dated texts, one LoRA finetune (2026-11-30).
# It answers questions about today (dates 51.2% with the Calendar vs 7.5% with calls banned) but
# lost ground on the math sets (SVAMP with tools 7.5% vs 13.6% for the shipped adapter, calls in
# 64% of answers vs 84%), so it was not adopted; see the README ("What the Calendar buys it").
# The adapter 0.3 (scripts/make_model_03.sh) adds the same dated texts to the 400-text recipe
# instead. About 2.5 hours on a 2-core CPU; writes build/model_calendar/adapter.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DATA=${DATA:-../shared/data/gsm8k_train}
WORK=${WORK:-build/model_calendar}
TRAIN_TEXTS=${TRAIN_TEXTS:-2000}    # the first N problems
DATE_TEXTS=${DATE_TEXTS:-400}       # generated texts about their own date, for the Calendar
WORKERS=${WORKERS:-2}               # Ray actors annotating the problems, a model and a core each
THREADS=${THREADS:-2}               # torch threads for the single-process steps
TOOLRUN="$PY -m toolrun.cli"
mkdir -p "$WORK"

# 1. Annotate the training texts with Calculator calls: proposers + consistency and copied-number
#    heuristics, calls inline, losses stored for every candidate. On a local Ray, one shard of 64
#    texts at a time per actor; resumes if interrupted.
$TOOLRUN annotate "$DATA" --limit "$TRAIN_TEXTS" --tools calculator --placement inline \
  --criterion gain --tau-f 1.0 --ray --workers "$WORKERS" --threads 1 -o "$WORK/train"

# 1b. The Calendar: $DATE_TEXTS generated texts about their own day, annotated with its calls.
source scripts/annotate_date_texts.sh

# 2. LoRA finetune on all training texts, both tools' calls re-selected from the stored losses
#    with the held-out-chosen criterion and tau_f (gain, 0.5), repeated calls kept as when this
#    candidate was made. On transformers' Trainer; checkpoints in $WORK/adapter/checkpoints,
#    resumed on rerun.
$TOOLRUN finetune "$WORK/train" "$WORK/dates/annotated.jsonl" --criterion gain \
  --tau-f "${TAU_F:-0.5}" --keep-repeated-calls --tools calculator,calendar --epochs 1 \
  --batch-size 8 --lr 5e-4 --lora-r 8 --lora-alpha 16 --max-length 384 --seed 0 \
  --threads "$THREADS" --save-steps 10 -o "$WORK/adapter"
