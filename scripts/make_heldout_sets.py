"""Write the held-out GSM8K-train problems that choose between adapters, as eval sets.

The last 200 rows of the training file are never annotated or trained on. Their problems with at
most two calculator steps are the closest this data comes to the one- and two-step problems of
SVAMP, ASDiv-A and MAWPS, so adapters are compared on them (`gsm8k_short82.jsonl`, 82 problems).
They are mostly two-step, which hid the terse-answer candidate's habit of always writing two
steps; so the one-step problems (0 or 1 marks, 16) and the two-step ones (66) are also written
apart, to be read separately. Sixteen problems cannot tell candidates apart, so
`gsm8k_one_step474.jsonl` adds the one-step problems of training rows 400-7272 (458): rows the
0.3 adapter never saw (it was trained on rows 0-399), held out from any candidate whose texts
leave one-step problems out (`make_step_texts.py --one-step-copies 0`, as 0.5's).

Many of those 474 are not one step of arithmetic: 86 have no calculator mark, and in others the
final answer needs a step the solution does not mark ("3/4*500=375" and then 500 - 375). Two
candidates with 32 right each shared only 15, so that noise can hide a real difference.
`gsm8k_one_mark.jsonl` keeps the problems whose one mark computes the final answer (246): the
problems one call can answer.

    python scripts/make_heldout_sets.py            # -> build/heldout/
    toolrun eval build/heldout/gsm8k_short82.jsonl --adapter ... --task math --modes no-tools,tools
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from toolrun.toolformer.data import strip_marks

ROWS_03 = 400  # training rows 0-399: the 0.3 adapter's GSM8K texts


def one_mark_answers(row: dict[str, str]) -> bool:
    """The row's solution has one calculator mark, and its result is the final answer."""
    _, marks = strip_marks(row["answer"])  # the annotator's own reading of the marks
    final = row["answer"].rsplit("####", 1)[-1].strip().replace(",", "")
    try:
        return len(marks) == 1 and float(marks[0].result) == float(final)
    except ValueError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="../shared/data/gsm8k_train/train.jsonl")
    parser.add_argument("--last", type=int, default=200, help="the held-out rows at the end")
    parser.add_argument("-o", "--out", type=Path, default=Path("build/heldout"))
    args = parser.parse_args()
    with open(args.data, encoding="utf-8") as f:
        every = [json.loads(line) for line in f]
    rows = every[-args.last :]
    steps = [row["answer"].count("<<") for row in rows]
    unseen = [row for row in every[ROWS_03 : -args.last] if row["answer"].count("<<") <= 1]
    sets = {
        "gsm8k_short82": [r for r, s in zip(rows, steps, strict=True) if s <= 2],
        "gsm8k_one_step": [r for r, s in zip(rows, steps, strict=True) if s <= 1],
        "gsm8k_two_step": [r for r, s in zip(rows, steps, strict=True) if s == 2],
    }
    sets["gsm8k_one_step474"] = unseen + sets["gsm8k_one_step"]
    sets["gsm8k_one_mark"] = [r for r in sets["gsm8k_one_step474"] if one_mark_answers(r)]
    args.out.mkdir(parents=True, exist_ok=True)
    for name, chosen in sets.items():
        path = args.out / f"{name}.jsonl"
        with open(path, "w", encoding="utf-8") as f:
            for row in chosen:
                f.write(json.dumps(row) + "\n")
        print(f"{len(chosen)} problems -> {path}")


if __name__ == "__main__":
    main()
