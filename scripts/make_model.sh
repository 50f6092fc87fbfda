#!/usr/bin/env bash
# Rebuild the default finetuned model's adapter, toolrun/adapters/toolrun-smollm2-135m-calc/
# (`make model`); it ships inside the toolrun package, so installed copies have it too.
# The exact recipe of the committed adapter (0.4: the Calculator on terse step-by-step answers
# and the Calendar); its MODEL_CARD.md has the numbers and timings. About 1.5 hours on a 2-core
# CPU (about an hour for the model itself); CI does not run it.
# The last 200 GSM8K train problems are the held-out slice that scores the annotator: they
# are never annotated for training.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DATA=${DATA:-../shared/data/gsm8k_train}
WORK=${WORK:-build/model}
OUT=${OUT:-toolrun/adapters/toolrun-smollm2-135m-calc}
STEP_TEXTS=${STEP_TEXTS:-2000}      # GSM8K problems with 1-3 steps, answers one line a step
DATE_TEXTS=${DATE_TEXTS:-400}       # generated texts about their own day, for the Calendar
WORKERS=${WORKERS:-2}               # Ray actors annotating the problems, a model and a core each
THREADS=${THREADS:-2}               # torch threads for the single-process steps
TOOLRUN="$PY -m toolrun.cli"
mkdir -p "$WORK" "$OUT"

# 1. The Calculator: GSM8K training problems whose answers keep only the arithmetic, one line a
#    step from the solution's own marks ("48 / 2 = 24.\n48 + 24 = 72.\nThe answer is 72."), so a
#    one- or two-step answer with its calls fits in 48 tokens. Annotated with Calculator calls:
#    proposers + consistency and copied-number heuristics, calls inline, losses stored for every
#    candidate. On a local Ray, one shard of 64 texts at a time per actor; resumes if interrupted.
$PY scripts/make_step_texts.py -n "$STEP_TEXTS" -o "$WORK/steps/texts.jsonl"
$TOOLRUN annotate "$WORK/steps/texts.jsonl" --tools calculator --placement inline \
  --criterion gain --tau-f 1.0 --ray --workers "$WORKERS" --threads 1 -o "$WORK/steps/annotated"

# 1b. The Calendar: texts that state facts about their own day (no dated corpus is reachable
#     here; the paper used dated web documents), each annotated with its own day as the
#     Calendar's answer. Every word is a position (tau_s 0, k 100): a 135M model gives " [" too
#     little probability for the paper's tau_s to keep any.
$PY scripts/make_date_texts.py -n "$DATE_TEXTS" -o "$WORK/dates/texts.jsonl"
$TOOLRUN annotate "$WORK/dates/texts.jsonl" --tools calendar --placement inline \
  --criterion gain --tau-f 0.5 --tau-s 0 --k 100 --threads "$THREADS" -o "$WORK/dates/annotated.jsonl"

# 2. Score the annotator on the held-out slice (GSM8K's own answers), both placements, every
#    criterion and tau_f.
$TOOLRUN annotate "$DATA" --last 200 --tools calculator --placement inline \
  --threads 1 -o "$WORK/heldout_inline.jsonl"
$TOOLRUN annotate "$DATA" --last "${PREFIX_HELDOUT:-200}" --tools calculator --placement prefix \
  --threads 1 -o "$WORK/heldout_prefix.jsonl"
$TOOLRUN score-annotations "$WORK/heldout_inline.jsonl" "$WORK/heldout_prefix.jsonl"

# 3. LoRA finetune on both sets of texts, calls re-selected from the stored losses with the
#    held-out-chosen criterion and tau_f (gain, 0.5; a call repeating an earlier one is dropped).
#    On transformers' Trainer; checkpoints in $WORK/adapter/checkpoints, resumed on rerun.
#    One epoch over 2,400 texts = 300 steps.
$TOOLRUN finetune "$WORK/steps/annotated" "$WORK/dates/annotated.jsonl" --criterion gain \
  --tau-f "${TAU_F:-0.5}" --tools calculator,calendar --epochs 1 --batch-size 8 --lr 5e-4 \
  --lora-r 8 --lora-alpha 16 --max-length 384 --seed 0 --threads "$THREADS" --save-steps 20 \
  -o "$WORK/adapter"
cp "$WORK/adapter/adapter_model.safetensors" "$WORK/adapter/adapter_config.json" \
  "$WORK/adapter/training.json" "$OUT/"
