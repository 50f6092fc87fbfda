"""The Calculator: the paper's forms, tricky inputs, exactness against Fraction, bounded cost."""

from __future__ import annotations

import time
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import toolrun
from toolrun.testing import ScriptedModel
from toolrun.tools.calculator import (
    MAX_BITS,
    CalculatorError,
    calculator,
    evaluate,
    evaluate_exact,
    format_number,
)

FORMS = [
    ("400 / 1400", "0.29"),  # the paper's example
    ("27 + 4 * 2", "35"),
    ("658,893 × 11.4%", "75113.8"),
    ("1,234,567.5 - 0.5", "1234567"),
    ("1,000,000 / 3", "333333.33"),
    ("3 x 4", "12"),
    ("3x4", "12"),
    ("3 X 4", "12"),
    ("12 ÷ 4", "3"),
    ("2^10", "1024"),
    ("2**10", "1024"),
    ("(2 + 3)^2", "25"),
    ("2^-1", "0.5"),
    ("-2^2", "-4"),
    ("-(2 + 3)", "-5"),
    ("--3", "3"),
    ("+3", "3"),
    ("−7 − 3", "-10"),
    ("(1 + 2) * 3", "9"),
    ("1/3", "0.33"),
    ("2/3", "0.67"),
    ("0.125", "0.13"),  # halves round away from zero
    ("-0.125", "-0.13"),
    ("0.1 + 0.2", "0.3"),  # exact, not 0.30000000000000004
    ("-0.001", "0"),  # never "-0"
    ("10 / 4", "2.5"),
    ("11.4%", "0.11"),
    ("50% of 120", "60"),
    ("12.5 % * 80", "10"),
    ("$1,200 x 3", "3600"),
    ("2 + 3 =", "5"),
    ("1e3 + 1", "1001"),
    ("2.5E-1 * 4", "1"),
    (".5 * 4", "2"),
    ("5. + 1", "6"),
    ("  12   +\n30  ", "42"),
    ("2 ** 0.5", "1.41"),
    ("100000 * 100000", "10000000000"),
    ("2**60", "1152921504606846976"),  # whole numbers below 1e21 keep every digit
    ("10**25", "1e+25"),
    ("7 * (6 - 6)", "0"),
]

ERRORS = [
    ("1/0", "division by zero"),
    ("0**-1", "division by zero"),
    ("", "empty expression"),
    ("   ", "empty expression"),
    ("2 +", "cannot parse"),
    ("(1 + 2", "cannot parse"),
    ("10 % 3", "cannot parse"),  # % is a percentage, not modulo
    ("1,2", "not arithmetic: ',' in '1,2'"),
    ("import os", "not arithmetic"),
    ("__import__('os').system('true')", "not arithmetic"),
    ("abs(-1)", "not arithmetic"),
    ("[1, 2]", "not arithmetic"),
    ("1 // 2", "not arithmetic"),
    ("1 < 2", "not arithmetic"),
    ("...", "not a number"),
    ("9**9**9", "out of range"),
    ("2**1001", "out of range"),
    ("1e999999999", "out of range"),
    ("(10**300)**4", "out of range"),
    ("1" * 400, "out of range"),
    ("(-8)**(1/3)", "no real fractional power"),
    ("1" * 1001, "longer than 1000 characters"),
    ("(" * 300 + "1" + ")" * 300, "cannot parse"),
]


@pytest.mark.parametrize(("expression", "expected"), FORMS)
def test_forms(expression: str, expected: str) -> None:
    assert calculator(expression) == expected
    assert evaluate(expression) == float(expected)


@pytest.mark.parametrize(("expression", "message"), ERRORS)
def test_errors_are_short_tool_errors(expression: str, message: str) -> None:
    with pytest.raises(CalculatorError, match=message) as raised:
        calculator(expression)
    assert isinstance(raised.value, toolrun.ToolError)
    assert len(str(raised.value)) <= 80


def test_long_flat_and_deep_expressions_evaluate() -> None:
    assert calculator("+".join(["1"] * 500)) == "500"  # a 500-deep tree
    assert calculator("-" * 999 + "1") == "-1"
    assert calculator("2**999 / 2**998") == "2"


def test_evaluate_exact_keeps_every_digit() -> None:
    assert evaluate_exact("1/3 + 1/6") == Fraction(1, 2)
    assert evaluate_exact("0.1 * 3") == Fraction(3, 10)
    assert evaluate_exact("11.4%") == Fraction(114, 1000)


def test_format_number() -> None:
    assert format_number(Fraction(29, 100)) == "0.29"
    assert format_number(3.0) == "3"
    assert format_number(-2.499) == "-2.5"
    assert format_number(Fraction(10**18 + 1, 2)) == "5e+17"  # past 1e15: significant digits


# Property tests: expressions built with their exact value (or the error they must raise).

_SPELLINGS = {"*": ["*", "×", " x "], "/": ["/", "÷"], "**": ["**", "^"]}


def _exact_or_error(value: Fraction) -> Fraction | str:
    if value.numerator.bit_length() > MAX_BITS or value.denominator.bit_length() > MAX_BITS:
        return "out of range"
    return value


def _combine(op: str, left: Fraction | str, right: Fraction | str) -> Fraction | str:
    if isinstance(left, str):
        return left
    if isinstance(right, str):
        return right
    if op == "+":
        return _exact_or_error(left + right)
    if op == "-":
        return _exact_or_error(left - right)
    if op == "*":
        return _exact_or_error(left * right)
    if op == "/":
        return "division by zero" if right == 0 else _exact_or_error(left / right)
    exponent = int(right)
    if left == 0 and exponent < 0:
        return "division by zero"
    return _exact_or_error(left**exponent)


@st.composite
def _literal(draw: st.DrawFn) -> tuple[str, Fraction | str]:
    whole = draw(st.integers(0, 10**7))
    places = draw(st.integers(0, 3))
    value = Fraction(whole, 10**places)
    if places:
        text = f"{whole // 10**places}.{whole % 10**places:0{places}d}"
    elif whole >= 1000 and draw(st.booleans()):
        text = f"{whole:,}"  # thousands separators
    else:
        text = str(whole)
    return text, value


def _extend(children: st.SearchStrategy) -> st.SearchStrategy:
    @st.composite
    def node(draw: st.DrawFn) -> tuple[str, Fraction | str]:
        kind = draw(st.sampled_from(["+", "-", "*", "/", "**", "neg"]))
        left_text, left = draw(children)
        if kind == "neg":
            return f"-({left_text})", left if isinstance(left, str) else -left
        if kind == "**":
            exponent = draw(st.integers(-3, 4))
            spelled = draw(st.sampled_from(_SPELLINGS["**"]))
            return f"({left_text}){spelled}({exponent})", _combine("**", left, Fraction(exponent))
        right_text, right = draw(children)
        spelled = draw(st.sampled_from(_SPELLINGS.get(kind, [kind])))
        return f"({left_text}) {spelled} ({right_text})", _combine(kind, left, right)

    return node()


EXPRESSIONS = st.recursive(_literal(), _extend, max_leaves=24)


def _round_half_up(value: Fraction) -> Fraction:
    whole, rest = divmod(abs(value) * 100, 1)
    whole += rest >= Fraction(1, 2)
    return Fraction(int(whole) if value >= 0 else -int(whole), 100)


@settings(
    max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(EXPRESSIONS)
def test_matches_exact_fraction_arithmetic(case: tuple[str, Fraction | str]) -> None:
    text, expected = case
    if len(text) > 1000:
        return
    if isinstance(expected, str):
        with pytest.raises(CalculatorError, match=expected):
            evaluate(text)
    else:
        assert evaluate_exact(text) == expected
        assert evaluate(text) == float(_round_half_up(expected))
        assert float(calculator(text)) == pytest.approx(float(_round_half_up(expected)), rel=1e-14)


_ALPHABET = "0123456789" * 3 + "+-*/^()., %xX×÷eE$=" + "ab_[]{}'\"<>!~&|@#;:é√∞\n"
_ATOMS = ["9", "99999999", "**", "^", "(", ")", "-", "*", "/", "+", ".", "e", "9e99", "%", ",", "0"]


def _assert_fast_and_clean(text: str) -> None:
    started = time.thread_time()  # CPU time: other users of this machine do not count
    try:
        result = calculator(text)
    except CalculatorError:
        pass
    else:
        assert isinstance(result, str) and result
    assert time.thread_time() - started < 0.5, text[:80]


@settings(
    max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(st.text(alphabet=_ALPHABET, max_size=1000))
def test_any_text_is_fast_and_raises_only_calculator_errors(text: str) -> None:
    _assert_fast_and_clean(text)


@settings(
    max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(st.lists(st.sampled_from(_ATOMS), max_size=400).map("".join))
def test_adversarial_token_soup_is_fast(text: str) -> None:
    _assert_fast_and_clean(text[:1000])


@pytest.mark.parametrize(
    "text",
    [
        "9" * 1000,
        "9" * 990 + "%",
        "9**" * 333 + "9",
        "(" * 199 + "9**9**9" + ")" * 199,
        "-" * 999 + "9",
        "+".join(["9" * 99] * 10),
        "*".join(["9" * 99] * 10),
        "/".join(["7" * 9] * 100),
        "1/3+1/7+1/11+1/13+1/17+1/19+1/23+1/29+1/31+1/37" * 6,
        "(99999999**9)" + "*(99999999**9)" * 70,
        "2**0.5**" * 100 + "2",
        "+".join(["0.5"] * 250),  # many decimal literals, each read from its source text
        "1e999*" * 100 + "1",
        "0." + "0" * 997 + "1",
        "1," * 333 + "000",
    ],
)
def test_worst_cases_are_fast(text: str) -> None:
    assert len(text) <= 1000
    _assert_fast_and_clean(text)


def test_end_to_end_through_generate() -> None:
    model = ScriptedModel(["x [Calculator(400 / 1400) →", " done."])
    out = toolrun.generate("Q:", model=model, tools=["calculator"])
    assert out.text == "x [Calculator(400 / 1400) → 0.29] done."
    assert out.calls[0].result == "0.29" and out.calls[0].error is None


def test_end_to_end_error_reaches_the_model() -> None:
    model = ScriptedModel(["a [Calculator(2 ÷ 0) →", " b"])
    out = toolrun.generate("Q:", model=model, tools=[calculator])
    assert out.text == "a [Calculator(2 ÷ 0) → error: division by zero] b"
    assert out.calls[0].error == "division by zero"


def test_the_error_quotes_the_text_the_model_wrote():
    with pytest.raises(CalculatorError, match=r"not arithmetic: 'C' in 'Calculator 8 \+ 8'"):
        calculator("Calculator 8 + 8")
