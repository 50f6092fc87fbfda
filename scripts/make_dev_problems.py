"""Write development word problems from templates no adapter was trained on, one- and two-step.

The held-out GSM8K slices did not see what the evaluation sets show (README, "One-line
answers"): the default composes a second operation where one answers. These problems are
written here, in other words, names and items than `make_one_step_texts.py`'s training
templates, and from no evaluation set, so that candidates can be compared on the choice of one
or two operations before any evaluation set is run:

    python scripts/make_dev_problems.py -o build/heldout/dev_templates.jsonl   # 120 + 120
    toolrun eval build/heldout/dev_templates.jsonl --adapter ... --task math --modes no-tools,tools

Each row is GSM8K-shaped (`question`, `answer` ending in `#### N`) with `steps` (1 or 2) so
the two kinds can be read apart from the records (their ids say which: one-step rows first).
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import TypedDict

from toolrun.tools.calculator import evaluate_exact

NAMES = (
    ("Grace", "she"), ("Ibrahim", "he"), ("Chloe", "she"), ("Mateo", "he"), ("Aisha", "she"),
    ("Dmitri", "he"), ("Freya", "she"), ("Kofi", "he"), ("Lucia", "she"), ("Tomas", "he"),
)  # fmt: skip
ITEMS = ("shells", "bottles", "flowers", "nails", "stones", "postcards", "candles", "puzzles")

Draw = Callable[[random.Random], tuple[int, int, int]]


class DevProblem(TypedDict):
    """One written row: GSM8K's two fields and how many operations answer it."""

    question: str
    answer: str
    steps: int


def _any(rng: random.Random) -> tuple[int, int, int]:
    return rng.randint(12, 300), rng.randint(3, 90), rng.randint(2, 40)


def _small(rng: random.Random) -> tuple[int, int, int]:
    return rng.randint(2, 25), rng.randint(2, 20), rng.randint(2, 30)


def _shared(rng: random.Random) -> tuple[int, int, int]:
    """b divides a (one-step division)."""
    b = rng.randint(2, 12)
    return b * rng.randint(2, 30), b, 0


def _minus_two(rng: random.Random) -> tuple[int, int, int]:
    b, c = rng.randint(3, 80), rng.randint(3, 80)
    return b + c + rng.randint(2, 200), b, c


def _sum_divides(rng: random.Random) -> tuple[int, int, int]:
    """c divides a + b."""
    c = rng.randint(2, 9)
    total = c * rng.randint(3, 30)
    a = rng.randint(1, total - 1)
    return a, total - a, c


def _groups_priced(rng: random.Random) -> tuple[int, int, int]:
    """b divides a."""
    b = rng.randint(2, 12)
    return b * rng.randint(2, 20), b, rng.randint(2, 15)


def _some_of_product(rng: random.Random) -> tuple[int, int, int]:
    """c < a * b."""
    a, b = rng.randint(2, 20), rng.randint(2, 12)
    return a, b, rng.randint(1, a * b - 1)


def _change(rng: random.Random) -> tuple[int, int, int]:
    a, b = rng.randint(2, 20), rng.randint(2, 6)
    return a, b, a * b + rng.randint(1, 50)


# (expression over a, b, c; template; how to draw a, b, c)
ONE_STEP: tuple[tuple[str, str, Draw], ...] = (
    ("{a} + {b}", "A farmer picked {a} pumpkins in the morning and {b} in the afternoon. How "
                  "many pumpkins did the farmer pick that day?", _any),
    ("{a} + {b}", "{name} found {a} {items} on Saturday and {b} on Sunday. How many {items} "
                  "did {they} find over the weekend?", _any),
    ("{a} + {b}", "There were {a} people at the fair before {b} more came. How many people "
                  "were at the fair then?", _any),
    ("{a} - {b}", "A baker made {a} rolls and sold {b} of them. How many rolls were not "
                  "sold?", _minus_two),
    ("{a} - {b}", "The path is {a} meters long and {b} meters of it are painted. How many "
                  "meters are not painted yet?", _minus_two),
    ("{a} - {b}", "{name} is {a} centimeters tall and {other} is {b} centimeters tall. How "
                  "much taller is {name} than {other}?", _minus_two),
    ("{a} * {b}", "A garden has {a} rows of tulips with {b} tulips in each row. How many "
                  "tulips are in the garden?", _small),
    ("{a} * {b}", "{name} earns ${a} an hour. How much does {they} earn in {b} hours?", _small),
    ("{a} * {b}", "A crate holds {a} {items}. How many {items} are in {b} crates?", _small),
    ("{a} / {b}", "A school gives {a} {items} equally to {b} classrooms. How many {items} does "
                  "each classroom get?", _shared),
    ("{a} / {b}", "{name} walked {a} kilometers in {b} days, the same distance each day. How "
                  "far did {they} walk each day?", _shared),
    ("{a} / {b}", "A rope {a} meters long is cut into pieces {b} meters long. How many pieces "
                  "are there?", _shared),
)  # fmt: skip
TWO_STEP: tuple[tuple[str, str, Draw], ...] = (
    ("{a} + {b} - {c}", "{name} had {a} {items}. {They} got {b} more and then gave {c} to "
                        "{other}. How many {items} does {name} have now?", _minus_two),
    ("{a} - {b} - {c}", "A shop had {a} {items}. It sold {b} in the morning and {c} in the "
                        "afternoon. How many {items} are left?", _minus_two),
    ("{a} * {b} - {c}", "{name} buys {a} bags with {b} {items} in each bag and breaks {c} of "
                        "them. How many whole {items} are left?", _some_of_product),
    ("{c} - {a} * {b}", "A ticket costs ${b}. {name} buys {a} tickets and pays with ${c}. How "
                        "much change does {they} get?", _change),
    ("({a} + {b}) / {c}", "{a} children and {b} adults go on a trip. Each van carries {c} "
                          "people and every van is full. How many vans do they use?",
     _sum_divides),
    ("({a} + {b}) / {c}", "A class has {a} boys and {b} girls. They stand in rows of {c}. How "
                          "many rows are there?", _sum_divides),
    ("{a} * {b} + {c}", "{name} read {a} pages on each of {b} days and then {c} more pages. "
                        "How many pages did {they} read?", _small),
    ("{a} / {b} * {c}", "A farmer packs {a} eggs in boxes of {b} and sells each box for ${c}. "
                        "How much money does the farmer get?", _groups_priced),
)  # fmt: skip


def problem(rng: random.Random, templates: tuple[tuple[str, str, Draw], ...]) -> DevProblem:
    expression, template, draw = rng.choice(templates)
    (name, pronoun), (other, _) = rng.sample(NAMES, 2)
    a, b, c = draw(rng)
    step = expression.format(a=a, b=b, c=c)
    exact = evaluate_exact(step)  # the Calculator's own arithmetic
    if exact.denominator != 1 or exact <= 0:
        raise AssertionError(f"{step} = {exact} is not a positive whole number")
    value = exact.numerator
    question = template.format(
        name=name, other=other, items=rng.choice(ITEMS), a=a, b=b, c=c,
        they=pronoun, They=pronoun.capitalize(),
    )  # fmt: skip
    answer = f"{step} = <<{step.replace(' ', '')}={value}>>{value}.\n#### {value}"
    return {"question": question, "answer": answer, "steps": 1 if templates is ONE_STEP else 2}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=120, help="problems of each kind")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    rows = [problem(rng, ONE_STEP) for _ in range(args.n)]
    rows += [problem(rng, TWO_STEP) for _ in range(args.n)]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    print(f"{len(rows)} problems ({args.n} one-step, {args.n} two-step) -> {args.output}")


if __name__ == "__main__":
    main()
