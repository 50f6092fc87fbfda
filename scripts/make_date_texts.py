"""Write the Calendar's training texts: short texts that each state facts about their own date.

The paper annotated CCNet documents with Calendar calls that return each document's date. Nothing
like that corpus is reachable here, so the texts are written from templates, each with the day it
is "written" on (``"date"``); `toolrun annotate` makes the Calendar answer with that day, and
keeps a call where the result makes the following words easier to predict.

The days are random over 2000-2035, so no one year, month or weekday is right often enough to be
learned without the call. The evaluation set (scripts/make_dateset.py) asks other questions in
other words, on other days; neither was changed after a score was seen.

    python scripts/make_date_texts.py -n 400 -o build/model/dates/texts.jsonl
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
from pathlib import Path

DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")  # fmt: skip
FIRST, LAST = dt.date(2000, 1, 1), dt.date(2035, 12, 31)

# (question or None, text). A question's text starts a worked answer, where calls may go.
TEMPLATES = (
    (None, "Notice to all residents. Today is {weekday}, {month} {day}, {year}. The hall is "
           "open until six."),
    (None, "Dear diary, it is {weekday} today. Tomorrow is {next_weekday}, and I have a test."),
    (None, "We are now in {month} {year}. Next month will be {next_month}."),
    (None, "The year is {year}. Last year was {last_year}."),
    (None, "Today is {month} {day}, {year}, a {weekday}. Yesterday was {last_weekday}."),
    (None, "This report was written on {weekday}, {month} {day}, {year}."),
    ("Which day of the week is it?", "Today is {weekday}, {month} {day}, {year}."),
    ("What is the date today?", "It is {weekday}, {month} {day}, {year}."),
    ("In what year are we?", "Today is {month} {day}, {year}, so we are in {year}."),
    ("What month is it now?", "Today is {weekday}, {month} {day}, so it is {month}."),
    ("What day will tomorrow be?", "Today is {weekday}, {month} {day}, so tomorrow is "
                                   "{next_weekday}."),
    ("Which month comes after this one?", "Today is {month} {day}, {year}, so the next month "
                                          "is {next_month}."),
)  # fmt: skip


def fields(day: dt.date) -> dict[str, object]:
    return {
        "weekday": DAYS[day.weekday()],
        "next_weekday": DAYS[(day.weekday() + 1) % 7],
        "last_weekday": DAYS[(day.weekday() - 1) % 7],
        "month": MONTHS[day.month - 1],
        "next_month": MONTHS[day.month % 12],
        "day": day.day,
        "year": day.year,
        "last_year": day.year - 1,
    }


def texts(count: int, seed: int) -> list[dict[str, object]]:
    rng = random.Random(seed)
    span = (LAST - FIRST).days
    rows = []
    for index in range(count):
        day = FIRST + dt.timedelta(days=rng.randrange(span + 1))
        question, body = TEMPLATES[index % len(TEMPLATES)]
        answer = body.format(**fields(day))
        head = f"Question: {question}\nAnswer: " if question else ""
        rows.append(
            {
                "id": f"dates-{index}",
                "text": head + answer,
                "start": len(head),
                "date": day.isoformat(),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--count", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-o", "--output", required=True)
    args = parser.parse_args()
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as handle:
        for row in texts(args.count, args.seed):
            handle.write(json.dumps(row) + "\n")
    print(f"{args.count} texts -> {out}")


if __name__ == "__main__":
    main()
