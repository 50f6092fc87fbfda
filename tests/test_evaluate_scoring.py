"""The scoring rules on hand-written outputs: the stated answer, the paper's first number, calls."""

from __future__ import annotations

import datetime as dt
import math

import pytest

from toolrun.evaluation.scoring import (
    answer_settled,
    computes_gold,
    extract_number,
    first_date,
    gold_quantities,
    normalize_answer,
    score_date,
    score_math,
    score_math_first_number,
    score_qa,
    split_worked_solution,
    stated_answer,
    wilson_interval,
)


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        (" 18", 18),
        ("The answer is 1,234 apples.", 1234),
        ("She pays $3.50 in total.", 3.5),
        ("It costs 1,234,567.25 dollars", 1234567.25),
        ("They had 3,4 or 5 of them", 3),  # not a thousands separator
        ("x is -7 degrees", -7),
        ("He ate 12. Then 5 more.", 12),
        ("about 1/2 of the cake", 0.5),
        ("So 5+3=8.", 8),  # an equation: the number after "=" counts
        ("(3 + 4) * 2 = 14 marbles", 14),
        (" 1.5 * 35 = 52.5", 52.5),
        ("23 * 17 = [Calculator(23 * 17) → 391] 391", 391),
        ("The ratio is [Calculator(400 / 1400) → 0.29] 0.29, so", 0.29),
        ("[Calculator(2 + 2) → 4] Four of them, 4.", 4),  # the call's own numbers never count
        ("2.", 2),
    ],
)
def test_extract_number(output: str, expected: float) -> None:
    found = extract_number(output)
    assert found is not None
    assert math.isclose(found[0], expected)


def test_no_number() -> None:
    assert extract_number("I do not know.") is None
    assert extract_number("[Calculator(2 + 2) → 4]") is None
    assert score_math("nothing here", 3) == (False, None)


@pytest.mark.parametrize(
    ("output", "answer", "correct"),
    [
        ("The answer is 18 dollars.", 18, True),
        ("18.0", 18, True),
        ("1,000 people", 1000, True),
        ("10 then 18", 18, False),  # only the first number counts
        ("3.33 kg", 10 / 3, True),  # gold rounded to the two decimals written
        ("3 kg", 10 / 3, False),  # a whole number is not a rounding of 3.333
        ("0.72", 0.72, True),
        ("0.7", 0.72, False),
        ("5+3=8", 5, False),
    ],
)
def test_score_math(output: str, answer: float, correct: bool) -> None:
    # no stated answer in these: both rules read the first number
    assert score_math(output, answer)[0] is correct
    assert score_math_first_number(output, answer)[0] is correct


@pytest.mark.parametrize(
    ("output", "stated"),
    [
        (" 48 / 2 = 24 clips in May, 48 + 24 = 72 in all. The answer is 72.", 72),
        ("She earns $10.\n#### 10", 10),
        ("The final answer is: $1,250.50", 1250.5),
        ("the answer is [Calculator(23 * 17) → 391] 391 pages", 391),  # the call is stripped
        ("The answer is 23 * 17 = 391", 391),  # an equation: its result
        ("The answer is unclear. 4 + 4 = 8, so the answer is 8.", 8),  # a number must follow
        ("The answer is 5. Question: ... The answer is 7.", 5),  # the first statement counts
        ("The answer is -3 degrees", -3),
    ],
)
def test_stated_answer(output: str, stated: float) -> None:
    found = stated_answer(output)
    assert found is not None and math.isclose(found[0], stated)


def test_no_stated_answer() -> None:
    assert stated_answer("24 clips, then 72 in all.") is None
    assert stated_answer("The answer is") is None
    assert stated_answer("[Calculator(2 + 2) → The answer is 4]") is None  # inside a call


def test_stated_answer_beats_the_first_number_and_both_are_reported() -> None:
    """GSM8K-style step-by-step output: the paper's rule takes an intermediate step."""
    output = " Natalia sold 48 / 2 = 24 clips in May. 48 + 24 = 72. The answer is 72."
    assert score_math(output, 72) == (True, "72")
    assert score_math_first_number(output, 72) == (False, "24")
    # and a wrong stated answer is wrong even when the first number happens to be right
    assert score_math(" 72 apples, no: the answer is 70.", 72) == (False, "70")
    assert score_math_first_number(" 72 apples, no: the answer is 70.", 72)[0] is True


def test_worked_solutions_and_calls_on_gold() -> None:
    solution = (
        "Weng earns 12/60 = $<<12/60=0.2>>0.2 per minute.\n"
        "Working 50 minutes, she earned 0.2 x 50 = $<<0.2*50=10>>10.\n#### 10"
    )
    answer, text = split_worked_solution(solution)  # type: ignore[misc]
    assert answer == 10 and text.endswith("$<<0.2*50=10>>10.")
    assert split_worked_solution("no final line") is None
    quantities = gold_quantities(text, answer)
    assert quantities == [0.2, 10, 10]
    assert computes_gold("0.2", quantities) and computes_gold("10", quantities)
    assert computes_gold("0.20", quantities)  # the Calculator's two decimals
    assert not computes_gold("600", quantities)  # 12 * 50: a step the solution never takes
    assert not computes_gold(None, quantities)  # a failed call computes nothing
    assert not computes_gold("error: division by zero", quantities)
    assert gold_quantities("no marks here") == []


@pytest.mark.parametrize(
    ("text", "normal"),
    [
        ("The Beatles!", "beatles"),
        ("  Élan   VITAL ", "elan vital"),
        ("“Paris”, France.", "paris france"),
        ("an apple a day", "apple day"),
    ],
)
def test_normalize_answer(text: str, normal: str) -> None:
    assert normalize_answer(text) == normal


def test_score_qa_case_punctuation_and_window() -> None:
    assert score_qa(" LIVERPOOL, England.", ["Liverpool"]) == (True, "Liverpool")
    assert score_qa("It was Bobby Scott's song", ["bobby scott"])[0]  # "bobby scott s song"
    assert score_qa("It was by Bobby Scott.", ["Bob Russell", "Bobby Scott"])[0]
    assert score_qa("Paris is lovely", ["Par"])[0] is False  # whole words only
    late = "one two three four five six Paris"
    assert score_qa(late, ["Paris"], words=5)[0] is False
    assert score_qa(late, ["Paris"], words=20)[0] is True
    assert score_qa("[QA(Who?) → Rome] Paris", ["Rome"])[0] is False  # results do not count


def test_dates() -> None:
    assert first_date("On 12/25/1937 and then 1/1/1938") == dt.date(1937, 12, 25)
    assert first_date("It was December 25th, 1937.") == dt.date(1937, 12, 25)
    assert first_date("the 3rd of May 2001") == dt.date(2001, 5, 3)
    assert first_date("1937-12-25") == dt.date(1937, 12, 25)
    assert first_date("13/45/2000 is no date") is None
    gold = ["(B)", "12/25/1937"]
    assert score_date("(B) 12/25/1937", gold)[0]
    assert score_date("Tomorrow is Dec 25, 1937.", gold)[0]
    assert score_date("(C) 01/04/1938", gold)[0] is False
    assert score_date("12/24/1937", gold)[0] is False
    # answers that are not dates are scored like QA
    assert score_date("Japan and China, I think", ["Japan and China"])[0]


def test_wilson_interval() -> None:
    low, high = wilson_interval(0, 50)
    assert low == 0.0 and 0.05 < high < 0.08
    low, high = wilson_interval(25, 50)
    assert math.isclose(low + high, 1.0) and 0.36 < low < 0.37
    low, high = wilson_interval(50, 50)
    assert math.isclose(high, 1.0) and 0.92 < low < 0.94
    assert wilson_interval(0, 0) == (0.0, 1.0)


@pytest.mark.parametrize(
    "output",
    [
        " 15\nExplanation: 58 - 35 = 15 apples left. The answer is 15.\nQuestion",
        "23 * 17 = [Calculator(23 * 17) → 391] 391 apples. The answer is 391 apples",
        "So 5+3=8. The answer is 8. Then 9",
        "The answer is 1,234.5 dollars",
        "The answer is 3,4 or 5",
        "the answer is 1/2 of it",
        "The answer is unclear: 5 + 3 = x so the answer is 7 now",
        "The answer is 3 + 4 * 2 = 11 marbles",
        "[Calculator(2 + 2) → 4] Four of them. #### 4 more.",
        "The answer is [Calculator(2 * 3) → 6] 6 eggs",
        "The final answer is: $-7 now",
    ],
)
def test_settled_answers_never_change(output: str) -> None:
    """Once a prefix is settled, every longer prefix scores the same: stopping there is safe."""
    final = score_math(output, 0)[1]
    settled = [i for i in range(len(output) + 1) if answer_settled(output[:i])]
    assert settled, "the full output should settle"
    assert all(score_math(output[:i], 0)[1] == final for i in settled)
    assert settled[-1] == len(output) and settled == list(range(settled[0], len(output) + 1))


def test_nothing_settles_before_an_answer_is_stated() -> None:
    """Without a statement, a later "The answer is" may still come: generation goes on."""
    output = " 48 / 2 = 24 clips in May, so 72 in all.\nThey sold many."
    assert not any(answer_settled(output[:i]) for i in range(len(output) + 1))


def test_settled_by_words() -> None:
    assert not answer_settled("one two three", words=3)
    assert answer_settled("one two three four", words=3)
    assert not answer_settled("one two three [QA(x", words=3)  # a call is open
    assert not answer_settled("\n\n", words=20)  # a newline before any text
    assert answer_settled("\n Paris\n", words=20)  # the first line of text has ended
