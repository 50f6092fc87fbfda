#!/usr/bin/env bash
# A candidate default adapter, NOT the shipped one ("0.4", 2026-11-30): the Calculator on 2,000
# GSM8K problems whose answers keep only their arithmetic, one line a step, plus the Calendar on
# the 400 dated texts (repeated calls dropped), one LoRA epoch. On the held-out one- and two-step
# GSM8K-train problems it beat the shipped adapter (11.0% vs 1.2% with tools, 96 tokens) and on
# the Dateset too (54.1% vs 40.0%), but it always writes two steps, even where one answers
# ("23 * 17 = 391.\n391 / 23 = 17.\nThe answer is 17."): its texts were 95% two- and three-step
# problems. On the full math sets it scored below the shipped adapter; see the README ("What the
# tools buy it"). About 1.2 hours on a 2-core CPU (the annotator scoring of make_model_03.sh is not
# repeated); writes build/model_steps/adapter.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DATA=${DATA:-../shared/data/gsm8k_train}
WORK=${WORK:-build/model_steps}
STEP_TEXTS=${STEP_TEXTS:-2000}      # GSM8K problems with 1-3 steps, answers one line a step
DATE_TEXTS=${DATE_TEXTS:-400}       # generated texts about their own day, for the Calendar
WORKERS=${WORKERS:-2}               # Ray actors annotating the problems, a model and a core each
THREADS=${THREADS:-2}               # torch threads for the single-process steps
TOOLRUN="$PY -m toolrun.cli"
mkdir -p "$WORK"

# 1. The Calculator: GSM8K training problems whose answers keep only the arithmetic, one line a
#    step from the solution's own marks ("48 / 2 = 24.\n48 + 24 = 72.\nThe answer is 72."): a
#    two-step answer with its calls takes a median 57 tokens instead of 75-90. Annotated with
#    Calculator calls: proposers + consistency and copied-number heuristics, calls inline, losses
#    stored for every candidate. On a local Ray, one shard of 64 texts at a time per actor;
#    resumes if interrupted.
$PY scripts/make_step_texts.py --data "$DATA/train.jsonl" -n "$STEP_TEXTS" \
  -o "$WORK/steps/texts.jsonl"
$TOOLRUN annotate "$WORK/steps/texts.jsonl" --tools calculator --placement inline \
  --criterion gain --tau-f 1.0 --ray --workers "$WORKERS" --threads 1 -o "$WORK/steps/annotated"

# 1b. The Calendar: $DATE_TEXTS generated texts about their own day, annotated with its calls.
source scripts/annotate_date_texts.sh

# 2. LoRA finetune on both sets of texts, calls re-selected from the stored losses with the
#    held-out-chosen criterion and tau_f (gain, 0.5; a call repeating an earlier one is dropped).
#    On transformers' Trainer; checkpoints in $WORK/adapter/checkpoints, resumed on rerun.
#    One epoch over 2,400 texts = 300 steps.
$TOOLRUN finetune "$WORK/steps/annotated" "$WORK/dates/annotated.jsonl" --criterion gain \
  --tau-f "${TAU_F:-0.5}" --tools calculator,calendar --epochs 1 --batch-size 8 --lr 5e-4 \
  --lora-r 8 --lora-alpha 16 --max-length 384 --seed 0 --threads "$THREADS" --save-steps 20 \
  -o "$WORK/adapter"
