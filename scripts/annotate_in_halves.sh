# Sourced by the make_model*.sh recipes (it uses their TOOLRUN): `toolrun annotate` over a file of
# texts in two one-thread processes, one a half, then the halves joined in order. 1.9 times one
# two-thread process on this 2-core machine (2.6 s a dated text against 4.9); each half resumes
# on its own if interrupted.
annotate_in_halves() {  # TEXTS OUT ANNOTATE-FLAGS...: annotated TEXTS into OUT
  local texts=$1 out=$2
  shift 2
  local half=$(( ($(wc -l < "$texts") + 1) / 2 )) stem=${out%.jsonl}
  local first
  $TOOLRUN annotate "$texts" "$@" --threads 1 --limit "$half" --skip 0 -o "${stem}_0.jsonl" &
  first=$!
  $TOOLRUN annotate "$texts" "$@" --threads 1 --limit "$half" --skip "$half" -o "${stem}_1.jsonl"
  wait "$first"  # a bare `wait` would hide the first half's failure
  cat "${stem}_0.jsonl" "${stem}_1.jsonl" > "$out"
}
