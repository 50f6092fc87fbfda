"""Write GSM8K training problems with terse worked answers: one line per calculator step.

The full sets' records showed why the 0.3 adapter's calls rarely reach a stated answer: it learned
GSM8K's prose (a one- or two-step training answer takes 75-90 tokens, 15% of them fit the 48-token
budget), and a call costs about ten generated tokens, so two answers in three with a call were cut
off before "The answer is". These texts keep only the arithmetic of each solution, from its own
``<<expression=result>>`` marks: with its calls a one-step answer takes a median 36 generated
tokens, a two-step one 57 (99th percentile 92, hence the 96-token budget of its evaluations):

    Question: Natalia sold clips to 48 of her friends in April, ...
    Answer: 48 / 2 = 24.
    48 + 24 = 72.
    The answer is 72.

The rows keep GSM8K's format (marks and ``#### n``), so `toolrun annotate` reads them as it reads
GSM8K: marks stripped and kept as gold, the final line "The answer is n.". Problems are taken in
order from the first ``--rows`` rows of the training file (the last 200 are the held-out slice and
are never used), keeping those with 1-3 steps whose expressions are plain chains of numbers and
operators (what the Calculator's proposer reads) and whose last step gives the final answer.

Known flaw: GSM8K has few one-step problems (106 of the first 2,000 kept), and the adapter taught
on these texts (`scripts/make_model_steps.sh`, not adopted) always writes two steps, even where
the first one answers. ``--one-line`` composes each solution's steps into one expression instead
("48 + (48 / 2) = 72.\nThe answer is 72."), so that every answer is one line whatever its step
count (the Calculator's proposer reads the parenthesised expression as written), and
``--one-step-copies`` writes each one-step problem several times (181 in the whole training file).

    python scripts/make_step_texts.py -n 2000 -o build/model_steps/steps/texts.jsonl
    python scripts/make_step_texts.py --one-line --max-steps 2 --one-step-copies 4 -n 100000 \
        -o build/model_line2/steps/texts.jsonl
"""

from __future__ import annotations

import argparse
import json
import random
import re
from pathlib import Path

from toolrun.toolformer.data import strip_marks
from toolrun.tools.calculator import CalculatorError, evaluate_exact

PLAIN = re.compile(r"\d+(?:\.\d+)?(?:\s*[-+*/]\s*\d+(?:\.\d+)?)+")
FINAL = re.compile(r"####\s*(.+?)\s*$")


def _steps(answer: str, max_steps: int) -> tuple[list[tuple[str, str]], str] | None:
    """The solution's (expression, result) marks and its written final answer, or None unless it
    has 1 to ``max_steps`` marks, each a plain chain of numbers and operators."""
    marks = [(mark.expression, mark.result) for mark in strip_marks(answer)[1]]
    final = FINAL.search(answer)
    if not marks or len(marks) > max_steps or final is None:
        return None
    if not all(PLAIN.fullmatch(expression) for expression, _ in marks):
        return None
    return marks, final.group(1)


def step_answer(answer: str, max_steps: int = 3) -> str | None:
    """The terse answer in GSM8K's format, or None when the solution does not fit it."""
    steps = _steps(answer, max_steps)
    if steps is None:
        return None
    marks, final = steps
    if marks[-1][1] != final.replace(",", ""):
        return None
    lines = []
    for expression, result in marks:
        spaced = re.sub(r"\s*([-+*/])\s*", r" \1 ", expression)
        lines.append(f"{spaced} = <<{expression}={result}>>{result}.")
    return "\n".join(lines) + f"\n#### {final}"


def one_line_answer(answer: str, max_steps: int = 3) -> str | None:
    """The solution's steps composed into one expression, one line: "48 + (48 / 2) = 72."; None
    when a step's result is not used exactly once later or the expression misses the answer."""
    steps = _steps(answer, max_steps)
    if steps is None:
        return None
    marks, final = steps
    composed: list[tuple[str, str]] = []  # (result, expression) of the earlier steps, unused yet
    for expression, result in marks:
        parts = []
        for token in re.findall(r"\d+(?:\.\d+)?|[-+*/]", expression):
            match = next((i for i, (r, _) in enumerate(composed) if r == token), None)
            if match is None:
                parts.append(token)
            else:
                parts.append(f"({composed.pop(match)[1]})")
        composed.append((result, " ".join(parts)))
    if len(composed) != 1:
        return None  # a step whose result no later step used
    expression = composed[0][1]
    try:
        if evaluate_exact(expression) != evaluate_exact(final.replace(",", "")):
            return None
    except CalculatorError:
        return None
    plain = expression.replace(" ", "")
    return f"{expression} = <<{plain}={final}>>{final}.\n#### {final}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="../shared/data/gsm8k_train/train.jsonl")
    parser.add_argument("-n", type=int, default=2000, help="texts to write")
    parser.add_argument("--rows", type=int, default=7273, help="training rows to draw from")
    parser.add_argument("--max-steps", type=int, default=3)
    parser.add_argument(
        "--one-line", action="store_true", help="the steps composed into one expression, one line"
    )
    parser.add_argument(
        "--one-step-copies",
        type=int,
        default=1,
        help="write each one-step problem this many times (GSM8K has few; they teach when to stop)",
    )
    parser.add_argument(
        "--sample", type=int, default=0, metavar="N",
        help="keep N of the texts, drawn with seed 0, in their order (mix400: 400)",
    )  # fmt: skip
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()
    with open(args.data, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f][: args.rows]
    write = one_line_answer if args.one_line else step_answer
    out: list[dict[str, str]] = []
    for row in rows:
        answer = write(row["answer"], args.max_steps)
        if answer is not None:
            one_step = len(strip_marks(row["answer"])[1]) == 1
            copies = args.one_step_copies if one_step else 1
            out.extend({"question": row["question"], "answer": answer} for _ in range(copies))
        if len(out) >= args.n:
            break
    out = out[: args.n]
    if args.sample:
        out = [out[i] for i in sorted(random.Random(0).sample(range(len(out)), args.sample))]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as f:
        for row in out:
            f.write(json.dumps(row) + "\n")
    kept = f"{len(out)} texts" + (" (a sample)" if args.sample else "")
    print(f"{kept} from the first {args.rows} rows -> {args.output}")


if __name__ == "__main__":
    main()
