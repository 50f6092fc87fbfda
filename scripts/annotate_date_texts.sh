# Sourced by the make_model*.sh recipes (it uses their PY, TOOLRUN, WORK and DATE_TEXTS): the
# Calendar's training texts. Texts that state facts about their own day (no dated corpus is
# reachable here; the paper used dated web documents), each annotated with its own day as the
# Calendar's answer. Every word is a position (tau_s 0, k 100): a 135M model gives " [" too
# little probability for the paper's tau_s to keep any. Two one-thread processes (halves of the
# file, each resumed if interrupted): 1.9 times one two-thread process here (2.6 s a text
# against 4.9).
$PY scripts/make_date_texts.py -n "$DATE_TEXTS" -o "$WORK/dates/texts.jsonl"
DATE_HALF=$(( (DATE_TEXTS + 1) / 2 ))
DATE_ANNOTATE="$TOOLRUN annotate $WORK/dates/texts.jsonl --tools calendar --placement inline
  --criterion gain --tau-f 0.5 --tau-s 0 --k 100 --threads 1 --limit $DATE_HALF"
$DATE_ANNOTATE --skip 0 -o "$WORK/dates/annotated_0.jsonl" &
$DATE_ANNOTATE --skip "$DATE_HALF" -o "$WORK/dates/annotated_1.jsonl"
wait
cat "$WORK/dates/annotated_0.jsonl" "$WORK/dates/annotated_1.jsonl" > "$WORK/dates/annotated.jsonl"
