"""Write one-step arithmetic word problems with one-line answers: Calculator training texts.

GSM8K's training file has only 181 problems whose solution is one plain calculator step, and
candidates taught on GSM8K alone compose two operations even where one answers ("(17 * 23) - 23"
for 23 pages a day over 17 days), four copies of those 181 did not cure it. These texts are
written from templates instead, as the Calendar's are: each a short problem that one operation
answers, the operation not given away by a keyword alone (money spent and left is an addition,
"how many more" a subtraction, "how many days" a division), in GSM8K's format with the step's mark:

    {"question": "Mia has 24 stickers. She gives 9 of them to Leo. How many stickers does Mia
                  have left?", "answer": "24 - 9 = <<24-9=15>>15.\\n#### 15"}

so `toolrun annotate` reads them as it reads GSM8K. The templates were written here, from no
evaluation set; the held-out GSM8K one-step problems (scripts/make_heldout_sets.py) judge them.

``--more-templates`` adds 16 templates (changes in, comparisons both ways, "times as many" both
ways); ``--distractors P`` adds, to that share of the problems, one sentence whose number the
answer does not use ("Mia also has 31 beads."), so that the operands are chosen, not just the
numbers in order. Without either option the output is the 24 templates' alone, as line3 had.
``--bare`` writes bare arithmetic questions instead ("What is 14 times 9?"), never the README's.

    python scripts/make_one_step_texts.py -n 1200 -o build/model_line3/one_step/texts.jsonl
    python scripts/make_one_step_texts.py -n 2400 --more-templates --distractors 0.4 -o ...
    python scripts/make_one_step_texts.py -n 300 --bare -o ...
"""

from __future__ import annotations

import argparse
import json
import random
import re
from pathlib import Path

NAMES = (
    ("Mia", "she"), ("Leo", "he"), ("Ava", "she"), ("Omar", "he"), ("Zoe", "she"),
    ("Ravi", "he"), ("Lena", "she"), ("Hugo", "he"), ("Nora", "she"), ("Ken", "he"),
    ("Ines", "she"), ("Tariq", "he"), ("Ruth", "she"), ("Pablo", "he"), ("Yuki", "she"),
    ("Sam", "he"), ("Ella", "she"), ("Jonas", "he"), ("Priya", "she"), ("Felix", "he"),
)  # fmt: skip
ITEMS = (
    "stickers", "marbles", "pencils", "cookies", "stamps", "cards", "balloons", "crayons",
    "beads", "buttons", "apples", "oranges", "coins", "toy cars", "comic books", "paper cranes",
)  # fmt: skip
POSSESSIVE = {"she": "her", "he": "his"}
OBJECT = {"she": "her", "he": "him"}

# (operation, template). a op b is the answer; for "/" a is a multiple of b. Fields: {name},
# {other} (another name), {they}/{their}/{them} (name's pronouns), {items}, {a}, {b}.
TEMPLATES = (
    ("+", "{name} has {a} {items}. {They} gets {b} more from {other}. How many {items} does "
          "{name} have now?"),
    ("+", "A shop sold {a} {items} on Monday and {b} on Tuesday. How many {items} did it sell "
          "on the two days?"),
    ("+", "{name} walked {a} meters to school and {b} meters to the park. How many meters did "
          "{they} walk in all?"),
    ("+", "One box holds {a} {items} and another holds {b}. How many {items} are in the two "
          "boxes together?"),
    ("+", "After spending ${b} on a game, {name} has ${a} left. How much money did {they} have "
          "before buying the game?"),
    ("+", "{other} has {a} {items}. {name} has {b} more {items} than {other}. How many {items} "
          "does {name} have?"),
    ("-", "{name} had {a} {items} and gave {b} of them to {other}. How many {items} does {name} "
          "have left?"),
    ("-", "A library owns {a} books and {b} of them are on loan. How many books are on the "
          "shelves?"),
    ("-", "{name} has {a} {items} and {other} has {b}. How many more {items} does {name} have "
          "than {other}?"),
    ("-", "{name} needs {a} {items} for a project and already has {b}. How many more {items} "
          "does {they} need?"),
    ("-", "A tank held {a} liters of water until {b} liters leaked out. How many liters are "
          "still in the tank?"),
    ("-", "{name} now has {a} {items} after {other} gave {them} {b}. How many {items} did "
          "{name} have before that?"),
    ("*", "{name} buys {a} packs of {items}. Each pack has {b} {items}. How many {items} does "
          "{they} buy?"),
    ("*", "A bus travels {a} kilometers every hour. How far does it go in {b} hours?"),
    ("*", "One ticket costs ${a}. How much do {b} tickets cost?"),
    ("*", "A hall has {a} rows of chairs with {b} chairs in each row. How many chairs are in "
          "the hall?"),
    ("*", "{name} saves ${a} every week. How much has {they} saved after {b} weeks?"),
    ("*", "Each of {b} classes has {a} students. How many students are in all the classes?"),
    ("/", "{name} shares {a} {items} equally among {b} friends. How many {items} does each "
          "friend get?"),
    ("/", "{a} students are split into teams of {b}. How many teams are there?"),
    ("/", "A ribbon {a} centimeters long is cut into {b} equal pieces. How long is each piece?"),
    ("/", "{name} paid ${a} for {b} {items} that cost the same. How much did each one cost?"),
    ("/", "{name} reads {b} pages a day. How many days does {they} take to read a book of {a} "
          "pages?"),
    ("/", "{a} {items} are packed {b} to a bag. How many bags are filled?"),
)  # fmt: skip
MORE_TEMPLATES = (
    ("+", "{name} scored {a} points in the first game and {b} points in the second. How many "
          "points did {they} score in both games?"),
    ("+", "There are {a} red {items} and {b} blue {items} in a bag. How many {items} are in "
          "the bag?"),
    ("+", "{other} is {a} years old. {name} is {b} years older than {other}. How old is "
          "{name}?"),
    ("+", "{name} gave away {b} {items} and still has {a}. How many {items} did {they} have "
          "at first?"),
    ("-", "{name} had {a} {items}. {They} lost {b} of them. How many {items} does {they} have "
          "now?"),
    ("-", "{name} has {a} {items}, which is {b} more than {other} has. How many {items} does "
          "{other} have?"),
    ("-", "A train had {a} passengers. At the station {b} passengers got off. How many "
          "passengers are on the train now?"),
    ("-", "A book has {a} pages. {name} has read {b} of them. How many pages are left to "
          "read?"),
    ("-", "{name} paid with ${a} for a toy that cost ${b}. How much change did {they} get?"),
    ("*", "{other} has {a} {items}. {name} has {b} times as many {items} as {other}. How many "
          "{items} does {name} have?"),
    ("*", "{name} runs {a} laps every day. How many laps does {they} run in {b} days?"),
    ("*", "Each box holds {a} {items}. How many {items} are in {b} boxes?"),
    ("/", "{name} has {a} {items}, {b} times as many as {other}. How many {items} does "
          "{other} have?"),
    ("/", "A car goes {a} kilometers in {b} hours at the same speed. How many kilometers does "
          "it go each hour?"),
    ("/", "{name} needs {a} {items}, and they come in packs of {b}. How many packs does "
          "{they} need?"),
    ("/", "{a} {items} are put into {b} jars, the same number in each. How many {items} are "
          "in each jar?"),
)  # fmt: skip
# Bare arithmetic questions (mixbare, 2026-12-01): a candidate taught on word problems alone
# answered the README's own "What is 23 * 17?" in its head (" 370.") instead of calling.
BARE_TEMPLATES = (
    ("+", "What is {a} + {b}?"), ("+", "What is {a} plus {b}?"),
    ("+", "What is the sum of {a} and {b}?"),
    ("-", "What is {a} - {b}?"), ("-", "What is {a} minus {b}?"),
    ("-", "What is {b} less than {a}?"),
    ("*", "What is {a} * {b}?"), ("*", "What is {a} times {b}?"),
    ("*", "What is the product of {a} and {b}?"),
    ("/", "What is {a} / {b}?"), ("/", "What is {a} divided by {b}?"),
    ("/", "How many times does {b} go into {a}?"),
)  # fmt: skip
# The README's and the model card's example question ("What is 23 * 17?") is never among the
# bare texts, so that answering it stays a check of what was learned, not of what was seen.
README_OPERANDS = frozenset({23, 17})
# A sentence whose number the answer does not use; {c} and {stuff} (items other than the
# problem's) are drawn apart from the problem's own.
DISTRACTORS = (
    "{name} also has {c} {stuff}.",
    "{name} is {c} years old.",
    "There are {c} {stuff} on the table.",
    "{other} bought {c} {stuff} last week.",
)


def operands(op: str, rng: random.Random) -> tuple[int, int]:
    if op == "+":
        return rng.randint(8, 400), rng.randint(3, 250)
    if op == "-":
        b = rng.randint(3, 250)
        return b + rng.randint(2, 300), b
    if op == "*":
        return rng.randint(2, 30), rng.randint(2, 25)
    b = rng.randint(2, 15)
    return b * rng.randint(2, 40), b


def problem(
    rng: random.Random, templates: tuple[tuple[str, str], ...] = TEMPLATES, distractors: float = 0
) -> dict[str, str]:
    op, template = rng.choice(templates)
    (name, pronoun), (other, _) = rng.sample(NAMES, 2)
    a, b = operands(op, rng)
    result = {"+": a + b, "-": a - b, "*": a * b, "/": a // b}[op]
    items = rng.choice(ITEMS)
    question = template.format(
        name=name, other=other, items=items, a=a, b=b,
        they=pronoun, They=pronoun.capitalize(), their=POSSESSIVE[pronoun], them=OBJECT[pronoun],
    )  # fmt: skip
    if distractors and rng.random() < distractors:
        question = with_distractor(question, rng, name=name, other=other, items=items, a=a, b=b)
    answer = f"{a} {op} {b} = <<{a}{op}{b}={result}>>{result}.\n#### {result}"
    return {"question": question, "answer": answer}


def problems(
    rng: random.Random,
    n: int,
    templates: tuple[tuple[str, str], ...],
    distractors: float = 0,
    avoid: frozenset[int] = frozenset(),
) -> list[dict[str, str]]:
    """``n`` problems, redrawing any whose question holds every number of ``avoid`` (the bare
    ones avoid README_OPERANDS; word problems avoid nothing, as line3..line5 had them)."""
    rows: list[dict[str, str]] = []
    while len(rows) < n:
        row = problem(rng, templates, distractors)
        if not avoid or not {int(x) for x in re.findall(r"\d+", row["question"])} >= avoid:
            rows.append(row)
    return rows


def with_distractor(
    question: str, rng: random.Random, *, name: str, other: str, items: str, a: int, b: int
) -> str:
    """``question`` with one distractor sentence before one of its statements (never after the
    question itself), its number unlike the operands (it may equal the answer, rarely)."""
    c = rng.choice([n for n in range(2, 60) if n not in (a, b)])
    stuff = rng.choice([i for i in ITEMS if i != items])
    sentence = rng.choice(DISTRACTORS).format(name=name, other=other, c=c, stuff=stuff)
    parts = question.split(". ")  # the statements, the last part holds the question
    at = rng.randint(1, len(parts) - 1)
    return ". ".join([*parts[:at], sentence.rstrip("."), *parts[at:]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=1200, help="problems to write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--more-templates", action="store_true", help="add 16 templates to the 24 (line4)"
    )
    parser.add_argument(
        "--distractors", type=float, default=0.0, metavar="P",
        help="share of problems given a sentence whose number the answer does not use",
    )  # fmt: skip
    parser.add_argument(
        "--bare", action="store_true",
        help="bare arithmetic questions ('What is 14 * 9?') instead of word problems",
    )  # fmt: skip
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    templates: tuple[tuple[str, str], ...] = TEMPLATES
    if args.bare:
        templates = BARE_TEMPLATES
    elif args.more_templates:
        templates = TEMPLATES + MORE_TEMPLATES
    avoid = README_OPERANDS if args.bare else frozenset()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as f:
        for row in problems(rng, args.n, templates, args.distractors, avoid):
            f.write(json.dumps(row) + "\n")
    print(f"{args.n} problems -> {args.output}")


if __name__ == "__main__":
    main()
