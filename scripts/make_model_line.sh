#!/usr/bin/env bash
# Candidate default adapters with one-line answers (2026-11-30): the Calculator on GSM8K problems
# whose answer is one composed expression on one line ("48 + (48 / 2) = 72.\nThe answer is
# 72."), plus the Calendar on the 400 dated texts (repeated calls dropped), one LoRA epoch.
#   line3 (the defaults): GSM8K's two-step problems (1,740) and 1,200 generated one-step
#     problems (scripts/make_one_step_texts.py); GSM8K's one-step problems are left out, so that
#     they can judge it (build/heldout/gsm8k_one_step474.jsonl, scripts/make_heldout_sets.py).
#   line4: GENERATED=2400 GENERATED_FLAGS="--more-templates --distractors 0.4"
#     WORK=build/model_line4: 40 templates, 40% of the problems with a distractor sentence.
#   r32 (2026-12-01): LORA_R=32 LORA_ALPHA=64 WORK=build/model_r32, line3's texts with four
#     times the LoRA rank; see the README ("One-line answers").
#   line5 (2026-12-01): LORA_R=32 LORA_ALPHA=64 MORE_GENERATED=2400 WORK=build/model_line5:
#     line3's texts plus line4's 2,400 generated problems, so one-step texts outnumber two-step
#     ones 2:1 (line3's texts 0.7:1), with r32's rank; 718 LoRA steps.
#   gen-only (information, 2026-12-01): GSM8K=0 WORK=build/model_genonly: line3's generated
#     one-step texts and the dated texts alone (200 steps); see the README.
#   mix400, mix800 (information, 2026-12-01): GSM8K_SAMPLE=400 (or 800) WORK=build/model_mix400:
#     line3's texts with 400 (800) of GSM8K's 1,740 two-step texts; see the README.
#   mixbare (2026-12-01): GSM8K_SAMPLE=400 BARE=300 WORK=build/model_mixbare: mix400's texts
#     and 300 bare arithmetic questions ("What is 14 times 9?"), never the README's 23 * 17.
#   answer-only (2026-12-02): GSM8K_SAMPLE=400 BARE=300 ANSWER_ONLY=1 WORK=build/model_ao:
#     mixbare's texts with the expression written only inside the call
#     ("[Calculator(48 + (48 / 2)) → 72] 72."), scripts/answer_only_texts.py.
#     0.6, the default since 2026-12-02, is answer-only with CHAT_TEMPLATE=question-answer
#     (toolrun/question_answer.jinja): chats are rendered as its texts read (make_model.sh).
#   aochat (2026-12-02): GSM8K_SAMPLE=400 BARE=300 ANSWER_ONLY=1 CHAT=1 WORK=build/model_aochat:
#     answer-only's texts, every other Calculator text also as a one-message chat in the model's
#     chat template, and every dated text kept (answer-only dropped those without a call).
#   aochat2 (2026-12-02): GSM8K_SAMPLE=400 BARE=300 ANSWER_ONLY=1 CHAT=1 CHAT_EVERY=4
#     DATE_TEXTS=800 WORK=build/model_aochat2: half of aochat's chat copies, twice its dated texts
#     (aochat lost 0.5's date stepping after the call: "last year" 7 of 40 against 30).
#   line2: ONE_STEP_COPIES=4 GENERATED=0 WORK=build/model_line2: GSM8K's one- and two-step
#     problems, the 181 one-step ones written 4 times. It still composed two operations where one
#     answers ("(17 * 23) - 23") and was not adopted.
# About 1 hour on a 2-core CPU; writes $WORK/adapter.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DATA=${DATA:-../shared/data/gsm8k_train}
WORK=${WORK:-build/model_line3}
ONE_STEP_COPIES=${ONE_STEP_COPIES:-0}   # times each GSM8K one-step problem is written
GENERATED=${GENERATED:-1200}            # generated one-step problems
GENERATED_FLAGS=${GENERATED_FLAGS:-}     # e.g. "--more-templates --distractors 0.4" (line4)
MORE_GENERATED=${MORE_GENERATED:-0}     # and so many more, written as line4's (line5: 2400)
GSM8K=${GSM8K:-1}                       # 0: no GSM8K text at all (gen-only)
GSM8K_SAMPLE=${GSM8K_SAMPLE:-0}         # N > 0: only N of the GSM8K texts (mix400: 400)
BARE=${BARE:-0}                         # bare arithmetic questions (mixbare: 300)
ANSWER_ONLY=${ANSWER_ONLY:-0}           # 1: the expression only inside the call (answer-only)
CHAT=${CHAT:-0}                         # 1: every other Calculator text again as a chat (aochat)
CHAT_EVERY=${CHAT_EVERY:-2}             # with CHAT=1: a chat copy of every Nth Calculator text
DATE_TEXTS=${DATE_TEXTS:-400}           # generated texts about their own day, for the Calendar
CHAT_TEMPLATE=${CHAT_TEMPLATE:-}        # a chat template shipped in the adapter: a file or
                                        # a built-in name (0.6: question-answer)
THREADS=${THREADS:-2}                   # torch threads for the single-process steps
TOOLRUN="$PY -m toolrun.cli"
mkdir -p "$WORK/steps"

# 1. The Calculator's texts: the GSM8K training problems with one or two steps (the held-out last
#    200 rows are never used) whose steps compose into one expression that gives the final
#    answer, written as one line from the solution's own marks, then the generated problems.
#    Annotated with Calculator calls (the proposer reads the parenthesised expression as
#    written), losses stored for every candidate, in two one-thread processes (halves of the
#    file; each resumes if interrupted).
add_generated() {  # N FILE FLAGS...: N generated one-step problems, appended to the texts
  local n=$1 file="$WORK/steps/$2"
  shift 2
  $PY scripts/make_one_step_texts.py -n "$n" "$@" -o "$file"
  cat "$file" >> "$WORK/steps/texts.jsonl"
}
: > "$WORK/steps/texts.jsonl"
if [ "$GSM8K" = 1 ]; then
  $PY scripts/make_step_texts.py --data "$DATA/train.jsonl" --one-line --max-steps 2 \
    --one-step-copies "$ONE_STEP_COPIES" --sample "$GSM8K_SAMPLE" -n 100000 \
    -o "$WORK/steps/gsm8k.jsonl"
  cat "$WORK/steps/gsm8k.jsonl" >> "$WORK/steps/texts.jsonl"
fi
if [ "$GENERATED" -gt 0 ]; then
  # shellcheck disable=SC2086  # the flags are words
  add_generated "$GENERATED" generated.jsonl $GENERATED_FLAGS
fi
if [ "$MORE_GENERATED" -gt 0 ]; then
  add_generated "$MORE_GENERATED" more_generated.jsonl --more-templates --distractors 0.4
fi
if [ "$BARE" -gt 0 ]; then
  add_generated "$BARE" bare.jsonl --bare
fi
TEXTS="$WORK/steps/texts.jsonl"
PROPOSE=""
ONLY_WITH_CALLS=""
if [ "$ANSWER_ONLY" = 1 ]; then
  $PY scripts/answer_only_texts.py "$TEXTS" -o "$WORK/steps/texts_answer_only.jsonl"
  TEXTS="$WORK/steps/texts_answer_only.jsonl"
  PROPOSE="--propose-gold"  # the expression is no longer written for the heuristic to read
  # Its calls gain less (13% of 60 training texts kept none at tau_f 0.5, 2% as written before):
  # a text without one would teach answering in the head.
  ONLY_WITH_CALLS="--only-with-calls"
fi
source scripts/annotate_in_halves.sh
# shellcheck disable=SC2086  # PROPOSE is one flag or none
annotate_in_halves "$TEXTS" "$WORK/steps/annotated.jsonl" --tools calculator --placement inline \
  --criterion gain --tau-f 1.0 $PROPOSE

# 1b. The Calendar: $DATE_TEXTS generated texts about their own day, annotated with its calls.
source scripts/annotate_date_texts.sh

# 2. LoRA finetune on both sets of texts, calls re-selected from the stored losses with the
#    held-out-chosen criterion and tau_f (gain, 0.5; a call repeating an earlier one is dropped).
#    On transformers' Trainer; checkpoints in $WORK/adapter/checkpoints, resumed on rerun.
#    One epoch: line3 2,940 + 400 texts = 418 steps; line5 5,340 + 400 = 718;
#    line2 2,464 + 400 = 358.
INPUTS=("$WORK/steps/annotated.jsonl" "$WORK/dates/annotated.jsonl")
SELECT=(--criterion gain --tau-f "${TAU_F:-0.5}" --tools calculator,calendar)
if [ "$CHAT" = 1 ]; then
  # The same selection written out as texts, every CHAT_EVERY-th Calculator text again as a
  # chat; only the Calculator's texts need a kept call (scripts/chat_texts.py).
  $PY scripts/chat_texts.py --calculator "${INPUTS[0]}" --calendar "${INPUTS[1]}" \
    --chat-every "$CHAT_EVERY" --tau-f "${TAU_F:-0.5}" -o "$WORK/steps/chat_texts.jsonl"
  INPUTS=("$WORK/steps/chat_texts.jsonl")
  SELECT=()  # already selected: these texts carry their calls
  ONLY_WITH_CALLS=""
fi
$TOOLRUN finetune "${INPUTS[@]}" "${SELECT[@]}" --epochs 1 --batch-size 8 --lr 5e-4 \
  --lora-r "${LORA_R:-8}" --lora-alpha "${LORA_ALPHA:-16}" \
  --max-length 384 --seed 0 --threads "$THREADS" --save-steps 20 -o "$WORK/adapter" $ONLY_WITH_CALLS \
  ${CHAT_TEMPLATE:+--chat-template "$CHAT_TEMPLATE"}
