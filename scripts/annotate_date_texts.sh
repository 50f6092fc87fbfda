# Sourced by the make_model*.sh recipes (it uses their PY, TOOLRUN, WORK and DATE_TEXTS): the
# Calendar's training texts. Texts that state facts about their own day (no dated corpus is
# reachable here; the paper used dated web documents), each annotated with its own day as the
# Calendar's answer. Every word is a position (tau_s 0, k 100): a 135M model gives " [" too
# little probability for the paper's tau_s to keep any.
source scripts/annotate_in_halves.sh
$PY scripts/make_date_texts.py -n "$DATE_TEXTS" -o "$WORK/dates/texts.jsonl"
annotate_in_halves "$WORK/dates/texts.jsonl" "$WORK/dates/annotated.jsonl" --tools calendar \
  --placement inline --criterion gain --tau-f 0.5 --tau-s 0 --k 100
