"""Scoring as in the Toolformer paper (Section 4.2), and the confidence interval we report.

- Math: the first number the model states counts, with the calls (and their results) removed
  first. When that number opens an equation ("5 + 3 = 8"), the number after "=" counts instead:
  the model computed it, and a call's result is usually repeated right after it.
- Question answering and fact completion: correct when a gold answer appears within the first
  words of the output (paper: 5 words for LAMA, 20 for the QA sets), compared after lower-casing,
  dropping punctuation and articles.
- Dates: the first date the model writes (any common format) equals a gold date; an option
  letter such as "(B)" counts when the output opens with it. Gold answers that are not dates fall
  back to the QA rule.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import string
import unicodedata
from collections.abc import Iterable, Sequence

from ..syntax import strip_calls

__all__ = [
    "answer_settled",
    "extract_number",
    "first_date",
    "normalize_answer",
    "numbers_match",
    "parse_date",
    "score_date",
    "score_math",
    "score_qa",
    "wilson_interval",
]

# A number as people write it: optional sign, thousands separators, decimals. A comma counts as a
# separator only before exactly three digits, so "3,4" stays two numbers.
_NUMBER = re.compile(r"(?<![\w.])[-−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s*/\s*\d+)?(?!\d)")
# Characters that may sit between the first number and "=" in an expression like "(3 + 4) * 2 =".
_EXPRESSION = re.compile(r"[\s\d.,+\-−*/x×÷()^]*=")


def _to_float(token: str) -> float | None:
    token = token.replace("−", "-").replace(",", "").replace(" ", "")
    try:
        if "/" in token:
            top, bottom = token.split("/")
            return float(top) / float(bottom) if float(bottom) != 0 else None
        return float(token)
    except ValueError:
        return None


def extract_number(text: str) -> tuple[float, str] | None:
    """The number the model states first in ``text`` (calls stripped), with its written form."""
    text = strip_calls(text)
    match = _NUMBER.search(text)
    if match is None:
        return None
    # "23 * 17 = 391": the number after the equals sign is the model's answer.
    expression = _EXPRESSION.match(text, match.end())
    if expression is not None:
        after = _NUMBER.search(text, expression.end())
        if after is not None and not text[expression.end() : after.start()].strip():
            match = after
    value = _to_float(match.group())
    return None if value is None else (value, match.group())


_MAY_CONTINUE = re.compile(r"[\s\d.,+\-−*/x×÷()^]*")  # text that could still become "... ="


def _call_open(text: str) -> bool:
    return text.rfind("[") > text.rfind("]")


def answer_settled(text: str, words: int | None = None) -> bool:
    """Can no continuation of ``text`` change its score?

    With ``words``: more than that many words are written (QA scoring reads only those), or a
    line of text has ended (a newline before any text does not count).
    Without: the first number and, for an equation, the number after "=" are complete, so
    ``extract_number`` gives the same answer for every continuation. Never while a call is open:
    stripping it when it closes moves the text. Used to stop generating once the answer is in.
    """
    if _call_open(text):
        return False
    text = strip_calls(text)
    if words is not None:
        # QA reads the first line's first words: done past them, or once a line has ended
        return len(text.split()) > words or "\n" in text.lstrip()
    match = _NUMBER.search(text)
    if match is None:
        return False
    rest = text[match.end() :]
    run = _MAY_CONTINUE.match(rest)
    assert run is not None
    if run.end() == len(rest):
        return False  # the number, or an expression after it, may still go on
    if rest[run.end()] != "=":
        return True
    after = rest[run.end() + 1 :]
    start = len(after) - len(after.lstrip())
    if start == len(after):
        return False
    if not re.match(r"[-−\d]", after[start]):
        return True  # no number right after "=": the first number stands
    result = _NUMBER.match(after, start)
    if result is None:
        return False
    return not re.fullmatch(r"[\s.,/]*", after[result.end() :])


def numbers_match(predicted: float, written: str, gold: float) -> bool:
    """Equal, allowing float noise, or equal once gold is rounded to the decimals written.

    "3.33" answers 3.333...; "3" does not answer 3.333 (at least two decimals must be written).
    """
    if math.isclose(predicted, gold, rel_tol=1e-6, abs_tol=1e-9):
        return True
    decimals = len(written.split(".")[1]) if "." in written and "/" not in written else 0
    return decimals >= 2 and math.isclose(round(gold, decimals), predicted, abs_tol=1e-9)


def score_math(output: str, answer: float) -> tuple[bool, str | None]:
    """(correct, predicted number as written) for a math word problem."""
    found = extract_number(output)
    if found is None:
        return False, None
    value, written = found
    return numbers_match(value, written, answer), written


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = set(string.punctuation) | {"‘", "’", "“", "”", "–", "—", "…"}


def normalize_answer(text: str) -> str:
    """Lower-case, strip accents, punctuation and articles, squeeze spaces."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c)).lower()
    text = "".join(" " if c in _PUNCTUATION else c for c in text)
    return " ".join(_ARTICLES.sub(" ", text).split())


def score_qa(output: str, answers: Sequence[str], words: int = 20) -> tuple[bool, str | None]:
    """(correct, the gold answer found) when a gold answer is within the first ``words`` words."""
    head = normalize_answer(" ".join(strip_calls(output).split()[:words]))
    padded = f" {head} "
    for answer in answers:
        gold = normalize_answer(answer)
        if gold and f" {gold} " in padded:
            return True, answer
    return False, None


_MONTHS = {
    name: i
    for i, names in enumerate(
        [
            ("jan", "january"),
            ("feb", "february"),
            ("mar", "march"),
            ("apr", "april"),
            ("may",),
            ("jun", "june"),
            ("jul", "july"),
            ("aug", "august"),
            ("sep", "sept", "september"),
            ("oct", "october"),
            ("nov", "november"),
            ("dec", "december"),
        ],
        start=1,
    )
    for name in names
}
_MONTH = r"(?P<month>" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")\.?"
_DATE_FORMS = [
    re.compile(r"\b(?P<m>\d{1,2})/(?P<d>\d{1,2})/(?P<y>\d{4})\b"),
    re.compile(r"\b(?P<y>\d{4})-(?P<m>\d{1,2})-(?P<d>\d{1,2})\b"),
    re.compile(_MONTH + r"\s+(?P<d>\d{1,2})(?:st|nd|rd|th)?,?\s+(?P<y>\d{4})\b", re.I),
    re.compile(
        r"\b(?P<d>\d{1,2})(?:st|nd|rd|th)?\s+(?:of\s+)?" + _MONTH + r",?\s+(?P<y>\d{4})\b", re.I
    ),
]
_OPTION = re.compile(r"^\(?([A-Z])\)")


def _dates_in(text: str) -> Iterable[tuple[int, dt.date]]:
    for form in _DATE_FORMS:
        for match in form.finditer(text):
            parts = match.groupdict()
            month = int(parts["m"]) if parts.get("m") else _MONTHS[parts["month"].lower()]
            try:
                yield match.start(), dt.date(int(parts["y"]), month, int(parts["d"]))
            except ValueError:
                continue


def first_date(text: str) -> dt.date | None:
    """The earliest date in ``text``: MM/DD/YYYY, YYYY-MM-DD, "May 3, 2001" or "3 May 2001"."""
    found = sorted(_dates_in(strip_calls(text)), key=lambda pair: pair[0])
    return found[0][1] if found else None


def parse_date(text: str) -> dt.date | None:
    """``text`` as a date when the whole of it is one."""
    found = list(_dates_in(text.strip()))
    return found[0][1] if len(found) == 1 else None


def score_date(output: str, answers: Sequence[str], words: int = 20) -> tuple[bool, str | None]:
    """(correct, what matched) for a date question; see the module docstring."""
    text = strip_calls(output).strip()
    dates = {d for d in (parse_date(a) for a in answers) if d is not None}
    options = [a for a in answers if _OPTION.fullmatch(a.strip())]
    if options:
        opened = _OPTION.match(text)
        if opened and any(_OPTION.match(a.strip())[1] == opened[1] for a in options):  # type: ignore[index]
            return True, opened.group()
    if dates:
        said = first_date(text)
        return (said in dates, None if said is None else said.isoformat())
    return score_qa(text, [a for a in answers if a not in options], words)


def wilson_interval(correct: int, total: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval for a proportion (sensible at 0 and n, unlike the normal one)."""
    if total == 0:
        return 0.0, 1.0
    p = correct / total
    denominator = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)
