#!/usr/bin/env bash
# Build the Hermes-format adapter, toolrun/adapters/toolrun-smollm2-135m-hermes/
# (`make hermes-model`): the same self-supervised Calculator annotations as the bracket adapter
# 0.3 (scripts/make_model_03.sh), rendered as Hermes chat conversations and finetuned as a second LoRA.
# The exact recipe of the committed adapter; its MODEL_CARD.md has the numbers and timings.
# About an hour on a busy shared 2-core CPU (annotation 31 min, finetuning 27 min when it was
# made); CI does not run it.
# The last 200 GSM8K train problems are the held-out slice: never annotated for training.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DATA=${DATA:-../shared/data/gsm8k_train}
WORK=${WORK:-build/hermes}
OUT=${OUT:-toolrun/adapters/toolrun-smollm2-135m-hermes}
TRAIN_TEXTS=${TRAIN_TEXTS:-240}     # the first N problems (rows 0-239, also in the bracket adapter's 400)
THREADS=${THREADS:-1}               # 1 torch thread: 2 that wait on each other are slower here
export OMP_NUM_THREADS=$THREADS
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"   # this checkout's toolrun for the scripts
mkdir -p "$WORK" "$OUT"

# 1. Annotate the training texts with Calculator calls: toolrun's own pipeline, the bracket
#    adapter's settings (proposers + consistency and copied-number heuristics, calls inline,
#    every candidate's losses stored). Resumes if interrupted.
$PY -m toolrun.cli annotate "$DATA" --limit "$TRAIN_TEXTS" --tools calculator --placement inline \
  --criterion gain --tau-f 1.0 --threads "$THREADS" -o "$WORK/train.jsonl"

# 2. Hermes chat conversations, calls re-selected from the stored losses as for the bracket
#    adapter (gain, tau_f 0.5), rendered with HERMES_CHATML and the Calculator's JSON schema;
#    each text checked token for token against what the runtime feeds at inference.
$PY scripts/hermes_data.py "$WORK/train.jsonl" --criterion gain --tau-f "${TAU_F:-0.5}" \
  --tools calculator -o "$WORK/chat.jsonl"

# 3. LoRA finetune (toolrun finetune's recipe, one sequence per forward: see the script).
$PY scripts/hermes_finetune.py "$WORK/chat.jsonl" --epochs "${EPOCHS:-1}" --batch-size 4 \
  --lr 1e-3 --lora-r 8 --lora-alpha 16 --max-length 1024 --seed 0 --threads "$THREADS" \
  -o "$WORK/adapter"
cp "$WORK/adapter/adapter_model.safetensors" "$WORK/adapter/adapter_config.json" \
  "$WORK/adapter/training.json" "$OUT/"
cp "$WORK/chat.stats.json" "$OUT/data.json"
