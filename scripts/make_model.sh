#!/usr/bin/env bash
# Rebuild the default finetuned model's adapter, toolrun/adapters/toolrun-smollm2-135m-calc/
# (`make model`); it ships inside the toolrun package, so installed copies have it too.
# Version 0.6, "answer-only" (2026-12-02): scripts/make_model_line.sh with 400 of GSM8K's
# two-step problems, the generated one-step problems and 300 bare questions, each answer written
# as its Calculator call alone ("[Calculator(48 + (48 / 2)) → 72] 72."), the 400 dated texts, and
# toolrun/question_answer.jinja shipped as the adapter's chat template, so chats are rendered as
# the texts read. Its MODEL_CARD.md has the numbers and timings. 26 minutes on a 2-core CPU
# (2026-12-02; the weights came out byte for byte the shipped ones); CI does not run it. The
# recipes before it: make_model_line.sh's defaults (0.5) and scripts/make_model_03.sh (0.3).
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${WORK:-build/model_ao}
OUT=${OUT:-toolrun/adapters/toolrun-smollm2-135m-calc}
GSM8K_SAMPLE=400 BARE=300 ANSWER_ONLY=1 CHAT_TEMPLATE=question-answer \
  WORK="$WORK" bash scripts/make_model_line.sh
mkdir -p "$OUT"
cp "$WORK/adapter/adapter_model.safetensors" "$WORK/adapter/adapter_config.json" \
  "$WORK/adapter/training.json" "$WORK/adapter/chat_template.jinja" "$OUT/"
