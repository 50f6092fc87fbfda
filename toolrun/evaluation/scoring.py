"""Scoring the evaluation sets, the Toolformer paper's rules (Section 4.2) and where they mislead.

- Math: the answer the model states ("The answer is 42", "#### 42", the forms the training texts
  end with) counts when it states one; otherwise the paper's rule, the first number it writes.
  The paper's rule alone takes an intermediate step of a step-by-step answer ("48 / 2 = 24 ...
  The answer is 72" would score 24), so both are reported where they differ. Calls (and their
  results) are removed first. When the number opens an equation ("5 + 3 = 8"), the number after
  "=" counts instead: the model computed it, and a call's result is usually repeated after it.
- Call quality on math: a call "computes a quantity of the gold solution" when its result
  equals a result of one of the solution's calculator marks (GSM8K's ``<<48/2=24>>``) or its
  final answer.
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
from collections.abc import Iterable, Iterator, Sequence

from ..syntax import strip_calls

__all__ = [
    "answer_settled",
    "computes_gold",
    "extract_number",
    "first_date",
    "gold_quantities",
    "normalize_answer",
    "numbers_match",
    "parse_date",
    "score_date",
    "score_math",
    "score_math_first_number",
    "score_qa",
    "split_worked_solution",
    "stated_answer",
    "wilson_interval",
]

# A number as people write it: optional sign, thousands separators, decimals. A comma counts as a
# separator only before exactly three digits, so "3,4" stays two numbers.
_NUMBER = re.compile(r"(?<![\w.])[-−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s*/\s*\d+)?(?!\d)")
# Characters that may sit between the first number and "=" in an expression like "(3 + 4) * 2 =".
_EXPRESSION = re.compile(r"[\s\d.,+\-−*/x×÷()^]*=")
# A stated final answer: "The answer is 42", "the final answer is: $42", "#### 42".
_STATED = re.compile(r"(?:\bthe\s+(?:final\s+)?answer\s+is|####)\s*:?\s*\$?\s*", re.IGNORECASE)
# A gold solution's calculator mark, "<<48/2=24>>": its result.
_MARK = re.compile(r"<<[^=<>]*=([^<>]*)>>")


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
    return _number_at(text, _NUMBER.search(text))


def _number_at(text: str, match: re.Match[str] | None) -> tuple[float, str] | None:
    """The number ``match`` found in ``text``, or the one after "=" when it opens an equation."""
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


def _stated(text: str) -> Iterator[tuple[re.Match[str], re.Match[str] | None]]:
    """Each answer statement in ``text`` (calls stripped), with the number right after it."""
    for phrase in _STATED.finditer(text):
        yield phrase, _NUMBER.match(text, phrase.end())


def stated_answer(text: str) -> tuple[float, str] | None:
    """The first answer ``text`` states ("The answer is N", "#### N"), with its written form.

    The first, not the last: what follows a stated answer is, for these models, a new made-up
    problem more often than a correction. A statement without a number right after it
    ("The answer is unclear") states nothing.
    """
    text = strip_calls(text)
    for _, number in _stated(text):
        if number is not None:
            return _number_at(text, number)
    return None


_MAY_CONTINUE = re.compile(r"[\s\d.,+\-−*/x×÷()^]*")  # text that could still become "... ="


def _call_open(text: str) -> bool:
    return text.rfind("[") > text.rfind("]")


def answer_settled(text: str, words: int | None = None) -> bool:
    """Can no continuation of ``text`` change its score?

    With ``words``: more than that many words are written (QA scoring reads only those), or a
    line of text has ended (a newline before any text does not count).
    Without (math): a stated answer ("The answer is N") is written and its number (and, for an
    equation, the number after "=") is complete, so ``score_math`` gives the same answer for
    every continuation. Until then any continuation may still state one. Never while a call is
    open: stripping it when it closes moves the text. Used to stop generating once the answer
    is in.
    """
    if _call_open(text):
        return False
    text = strip_calls(text)
    if words is not None:
        # QA reads the first line's first words: done past them, or once a line has ended
        return len(text.split()) > words or "\n" in text.lstrip()
    for phrase, number in _stated(text):
        if number is not None:
            return _number_complete(text[number.end() :])
        if not text[phrase.end() :].strip():
            return False  # the number may come next
    return False


def _number_complete(rest: str) -> bool:
    """Can no continuation of ``rest``, the text after a number, change which number counts?"""
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
    """(correct, predicted number as written): the stated answer, else the first number."""
    found = stated_answer(output) or extract_number(output)
    if found is None:
        return False, None
    value, written = found
    return numbers_match(value, written, answer), written


def score_math_first_number(output: str, answer: float) -> tuple[bool, str | None]:
    """The paper's rule: (correct, the first number written), whatever the output states later."""
    found = extract_number(output)
    if found is None:
        return False, None
    value, written = found
    return numbers_match(value, written, answer), written


def split_worked_solution(text: str) -> tuple[float, str] | None:
    """(final answer, solution) for a GSM8K-style worked solution ending in "#### N"."""
    head, sep, tail = text.rpartition("####")
    value = _to_float(tail.strip()) if sep else None
    return None if value is None else (value, head.rstrip())


def gold_quantities(solution: str, answer: float | None = None) -> list[float]:
    """The quantities a worked solution computes: its marks' results and its final answer."""
    found = [_to_float(result.strip().lstrip("$")) for result in _MARK.findall(solution)]
    if answer is not None:
        found.append(answer)
    return [value for value in found if value is not None]


def computes_gold(result: str | None, quantities: Sequence[float]) -> bool:
    """Does a call's result equal one of ``quantities`` (to the Calculator's two decimals)?"""
    if result is None:
        return False
    match = _NUMBER.search(result)
    value = None if match is None else _to_float(match.group())
    return value is not None and any(
        math.isclose(value, gold, abs_tol=0.005 + 1e-9) for gold in quantities
    )


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
