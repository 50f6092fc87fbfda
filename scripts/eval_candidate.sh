#!/usr/bin/env bash
# Measure a candidate adapter the way the default is measured, into benchmarks/results/*_NAME:
#   chat_calls_NAME     one-message chats: how many answers call (scripts/chat_calls.py)
#   eval_full_NAME      SVAMP + ASDiv-A + MAWPS, every problem, 96 tokens, calls banned / with
#                       the Calculator (two processes: SVAMP and ASDiv-A beside MAWPS; 16 min
#                       with llama.cpp's AMX path, 35-55 without)
#   eval_dates_NAME     questions about today, base / calls banned / with the Calendar
#   dev_templates_NAME  the dev problems (scripts/make_dev_problems.py)
# Against the default, problem by problem: python scripts/paired.py eval_full_NAME.json eval_full.json
# Usage: bash scripts/eval_candidate.sh build/model_aochat/adapter aochat
# Nothing is chosen from these sets: the decision rule is written before they are run.
set -euo pipefail
cd "$(dirname "$0")/.."
ADAPTER=$1
NAME=$2
PY=${PY:-.venv/bin/python}
WORK=build/eval_$NAME
RESULTS=benchmarks/results
EVAL="$PY -m toolrun.cli eval --adapter $ADAPTER --backend llama.cpp --batch-size 16 --no-progress"
FULL="$EVAL --max-new-tokens 96 --modes no-tools,tools --name full"

[ -f build/heldout/dev_templates.jsonl ] ||
  $PY scripts/make_dev_problems.py -o build/heldout/dev_templates.jsonl
$PY scripts/chat_calls.py --adapter "$ADAPTER" -o "$RESULTS/chat_calls_$NAME.json"

# The full sets in two processes, their records then merged and read back as one run.
$FULL svamp asdiv_a --out "$WORK/a" &
$FULL mawps --out "$WORK/b"
wait
mkdir -p "$WORK/full"
cat "$WORK/a/full.records.jsonl" "$WORK/b/full.records.jsonl" > "$WORK/full/full.records.jsonl"
$FULL svamp asdiv_a mawps --out "$WORK/full"

$EVAL benchmarks/data/dateset/test.jsonl --max-new-tokens 48 --modes base,no-tools,tools \
  --out "$WORK/dates" --name dates
$EVAL build/heldout/dev_templates.jsonl --task math --max-new-tokens 96 --modes no-tools,tools \
  --out "$WORK/dev" --name dev

keep() {  # FOLDER STEM TARGET: the run's summary files and gzipped records into results
  for ext in json md png; do
    if [ -f "$1/$2.$ext" ]; then cp "$1/$2.$ext" "$RESULTS/$3.$ext"; fi
  done
  gzip -c "$1/$2.records.jsonl" > "$RESULTS/$3.records.jsonl.gz"
}
keep "$WORK/full" full "eval_full_$NAME"
keep "$WORK/dates" dates "eval_dates_$NAME"
keep "$WORK/dev" dev "dev_templates_$NAME"
