#!/usr/bin/env bash
# Candidate default adapter "one-line" (2026-11-30): the Calculator on GSM8K problems of one or
# two steps whose answer is one composed expression on one line ("48 + (48 / 2) = 72.\nThe answer
# is 72."), the one-step problems written 4 times (GSM8K has only 181: they teach when to stop),
# plus the Calendar on the 400 dated texts (repeated calls dropped), one LoRA epoch. About 1 hour
# on a 2-core CPU; writes $WORK/adapter.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DATA=${DATA:-../shared/data/gsm8k_train}
WORK=${WORK:-build/model_line2}
DATE_TEXTS=${DATE_TEXTS:-400}       # generated texts about their own day, for the Calendar
ONE_STEP_COPIES=${ONE_STEP_COPIES:-4}
THREADS=${THREADS:-2}               # torch threads for the single-process steps
TOOLRUN="$PY -m toolrun.cli"
mkdir -p "$WORK/steps"

# 1. The Calculator: every GSM8K training problem with one or two steps (1,921; the held-out last
#    200 rows are never used) whose steps compose into one expression that gives the final answer,
#    written as one line from the solution's own marks; the one-step ones $ONE_STEP_COPIES times
#    (2,464 texts). Annotated with Calculator calls (the proposer reads the parenthesised
#    expression as written), losses stored for every candidate, in two one-thread processes
#    (halves of the file; each resumes if interrupted).
$PY scripts/make_step_texts.py --data "$DATA/train.jsonl" --one-line --max-steps 2 \
  --one-step-copies "$ONE_STEP_COPIES" -n 100000 -o "$WORK/steps/texts.jsonl"
HALF=$(( ($(wc -l < "$WORK/steps/texts.jsonl") + 1) / 2 ))
ANNOTATE="$TOOLRUN annotate $WORK/steps/texts.jsonl --tools calculator --placement inline
  --criterion gain --tau-f 1.0 --threads 1 --limit $HALF"
$ANNOTATE --skip 0 -o "$WORK/steps/annotated_0.jsonl" &
$ANNOTATE --skip "$HALF" -o "$WORK/steps/annotated_1.jsonl"
wait

# 1b. The Calendar: $DATE_TEXTS generated texts about their own day, annotated with its calls.
source scripts/annotate_date_texts.sh

# 2. LoRA finetune on both sets of texts, calls re-selected from the stored losses with the
#    held-out-chosen criterion and tau_f (gain, 0.5; a call repeating an earlier one is dropped).
#    On transformers' Trainer; checkpoints in $WORK/adapter/checkpoints, resumed on rerun.
#    One epoch over 2,864 texts = 358 steps.
$TOOLRUN finetune "$WORK/steps/annotated_0.jsonl" "$WORK/steps/annotated_1.jsonl" \
  "$WORK/dates/annotated.jsonl" --criterion gain --tau-f "${TAU_F:-0.5}" \
  --tools calculator,calendar --epochs 1 --batch-size 8 --lr 5e-4 --lora-r 8 --lora-alpha 16 \
  --max-length 384 --seed 0 --threads "$THREADS" --save-steps 20 -o "$WORK/adapter"
