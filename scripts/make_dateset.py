"""Write a Dateset-style evaluation set: questions whose answer depends on the day they are asked.

The paper's Dateset asked questions relative to the current date, which its Calendar returned.
Here each row carries the day it is asked on (``"today"``); `toolrun eval` asks a batch's
questions on that day and the Calendar answers with it. Eight kinds of question, a weekday, a
month, a year or a whole date, asked on 40 days drawn over 2000-2035 (none of the training texts'
days, scripts/make_date_texts.py). Written once, in other words than the training texts; never
tuned on. Questions that need arithmetic on dates (the paper's "how many days until ...") are left
out: the 135M default model cannot do that arithmetic with or without the date.

    python scripts/make_dateset.py -o benchmarks/data/dateset/test.jsonl
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from make_date_texts import DAYS, FIRST, LAST, MONTHS, texts

QUESTIONS = (
    ("What day of the week is it today?", lambda d: DAYS[d.weekday()]),
    ("What is the current year?", lambda d: str(d.year)),
    ("What month are we in?", lambda d: MONTHS[d.month - 1]),
    ("What is today's date?", lambda d: d.isoformat()),
    ("What day of the week will it be tomorrow?", lambda d: DAYS[(d.weekday() + 1) % 7]),
    ("What day of the week was it yesterday?", lambda d: DAYS[(d.weekday() - 1) % 7]),
    ("Which year was the year before this one?", lambda d: str(d.year - 1)),
    ("What will the month be after this month ends?", lambda d: MONTHS[d.month % 12]),
)


def rows(days: int, seed: int, training_days: set[str]) -> list[dict[str, object]]:
    rng = random.Random(seed)
    span = (LAST - FIRST).days
    chosen: list[dt.date] = []
    while len(chosen) < days:
        day = FIRST + dt.timedelta(days=rng.randrange(span + 1))
        if day.isoformat() not in training_days and day not in chosen:
            chosen.append(day)
    out: list[dict[str, object]] = []
    for day in chosen:
        for kind, (question, answer) in enumerate(QUESTIONS):
            out.append(
                {
                    "id": f"dateset-{day.isoformat()}-{kind}",
                    "question": question,
                    "answers": [answer(day)],
                    "today": day.isoformat(),
                }
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=40)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--training-texts", type=int, default=400, help="days to keep out")
    parser.add_argument("-o", "--output", required=True)
    args = parser.parse_args()
    seen = {str(row["date"]) for row in texts(args.training_texts, seed=0)}
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    written = rows(args.days, args.seed, seen)
    with out.open("w", encoding="utf-8") as handle:
        for row in written:
            handle.write(json.dumps(row) + "\n")
    print(f"{len(written)} questions on {args.days} days -> {out}")


if __name__ == "__main__":
    main()
