"""Rewrite one-line training texts so that the answer's expression is written only in the call.

The one-line texts (scripts/make_step_texts.py --one-line, scripts/make_one_step_texts.py) write
the set-up, then its result: "48 + (48 / 2) = <<48+(48/2)=72>>72.". A model taught on them,
with calls banned, still writes "48 + (48 / 2) = " and computes 72 in its head, so the
comparison "with the Calculator / calls banned" measures set-up in both arms. This writes the
result alone, "<<48+(48/2)=72>>72.", the paper's form ("[Calculator(400 / 1400) → 0.29]" where
the number stands): annotated with `toolrun annotate --propose-gold`, the answer becomes
"[Calculator(48 + (48 / 2)) → 72] 72.\\nThe answer is 72.", the set-up written inside the call.

    python scripts/answer_only_texts.py texts.jsonl -o texts_answer_only.jsonl
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

# The written expression and "=" before a line's mark: "48 + (48 / 2) = " of
# "48 + (48 / 2) = <<48+(48/2)=72>>72."
WRITTEN = re.compile(r"^[^\n<=]*=\s*(?=<<)", re.MULTILINE)


def answer_only(answer: str) -> str:
    """``answer`` with each marked line's written expression removed; raises ValueError when
    no line has one (the text is not a one-line answer)."""
    rewritten, count = WRITTEN.subn("", answer)
    if count == 0:
        raise ValueError(f"no written expression before a mark in {answer!r}")
    return rewritten


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("texts", type=Path, help="GSM8K-format JSONL (question, answer)")
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()
    rows = [json.loads(line) for line in args.texts.read_text(encoding="utf-8").splitlines()]
    with open(args.output, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps({**row, "answer": answer_only(row["answer"])}) + "\n")
    print(f"{len(rows)} texts, answers without their written expression -> {args.output}")


if __name__ == "__main__":
    main()
