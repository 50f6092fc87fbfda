"""Calculator: arithmetic the way the model writes it, exactly, and never with ``eval``.

    [Calculator(400 / 1400) → 0.29]    [Calculator(658,893 × 11.4%) → 75113.8]

The text is normalised (thousands separators, "x" "×" "÷" "^", percentages, currency signs),
parsed with ``ast`` and evaluated by walking the tree with an explicit stack, accepting only
numbers, + - * / ** and unary signs. Arithmetic is exact (``fractions.Fraction``); every number,
including each intermediate result, must fit in ``MAX_BITS`` bits of numerator and denominator,
and a power is refused before it is computed if its result could not. So no input can hang or
exhaust memory: 1,000 characters evaluate in well under 50 ms.

Results are rounded to 2 decimals (half away from zero), as in the paper. A percentage is a
number ("11.4%" is 0.114, "50% of 120" is 60, "200 + 10%" is 200.1); "%" is never modulo.

For code (the Toolformer pipeline, evaluation): ``evaluate(text) -> float`` (rounded),
``evaluate_exact(text) -> Fraction`` (not rounded), ``format_number(value) -> str`` (what the
tool returns); all raise ``CalculatorError`` (a ToolError) on input that is not arithmetic.
"""

from __future__ import annotations

import ast
import math
import re
from fractions import Fraction

import toolrun

__all__ = [
    "MAX_BITS",
    "MAX_EXPRESSION_CHARS",
    "CalculatorError",
    "calculator",
    "evaluate",
    "evaluate_exact",
    "format_number",
    "round_half_away",
]

MAX_EXPRESSION_CHARS = 1000
# 2**1000 is about 1e301: every value fits a float, and big-number work stays microseconds.
MAX_BITS = 1000

_REPLACEMENTS = {
    "×": "*", "✕": "*", "·": "*", "x": "*", "X": "*", "÷": "/", "∶": "/",
    "−": "-", "–": "-", "^": "**", "$": "", "€": "", "£": "",
}  # fmt: skip
_SEPARATOR = re.compile(r"(?<=\d),(?=\d{3}\b)")
_PERCENT_OF = re.compile(r"%\s*of\b", re.IGNORECASE)
# Unambiguous patterns only: a backtracking regex is the easy way to hang on 1,000 digits.
_PERCENT = re.compile(r"(?<![\d.])(\d+(?:\.\d*)?|\.\d+)\s*%")
_ALLOWED_CHARS = re.compile(r"[0-9.+\-*/() eE]*")
_NUMBER = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(?:[eE]([+-]?\d+))?")


class CalculatorError(toolrun.ToolError):
    """The text is not an arithmetic expression the Calculator accepts, or cannot be computed."""


def evaluate_exact(expression: str) -> Fraction:
    """The exact value of ``expression``; raises CalculatorError for anything else."""
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise CalculatorError(f"expression longer than {MAX_EXPRESSION_CHARS} characters")
    source = _normalise(expression)
    if not source.strip():
        raise CalculatorError("empty expression")
    if not _ALLOWED_CHARS.fullmatch(source):
        # Name the first character that is not arithmetic, with the text around it, so that
        # the model (and the app's log) can see what it wrote.
        at = next(i for i, c in enumerate(source) if not _ALLOWED_CHARS.fullmatch(c))
        shown = source[max(0, at - 10) : at + 20]
        raise CalculatorError(f"not arithmetic: {source[at]!r} in {shown!r}")
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise CalculatorError(f"cannot parse {_clip(expression)!r}") from exc
    return _walk(tree.body, source.strip())


def evaluate(expression: str) -> float:
    """The value of ``expression`` rounded to 2 decimals, as the tool reports it."""
    return float(round_half_away(evaluate_exact(expression)))


def round_half_away(value: Fraction, decimals: int = 2) -> Fraction:
    """Round exactly to ``decimals`` places, halves away from zero (0.125 -> 0.13)."""
    scale = 10**decimals
    magnitude = math.floor(abs(value) * scale + Fraction(1, 2))
    return Fraction(magnitude if value >= 0 else -magnitude, scale)


def format_number(value: Fraction | float | int) -> str:
    """Text for a result: '5', '0.29', '-2.5'; very large values in scientific notation."""
    exact = round_half_away(Fraction(value))
    if exact == 0:
        return "0"  # never "-0"
    if exact.denominator == 1 and abs(exact) < 10**21:
        return str(exact.numerator)
    if abs(exact) < 10**15:
        return f"{float(exact):.2f}".rstrip("0").rstrip(".")
    return f"{float(exact):.15g}"


# The paper's examples (Schick et al. 2023, appendix A.2), with results as this tool
# returns them: the annotator's prompt and the bracket format's preamble show them.
EXAMPLES = (
    "The number in the next term is 18 + 12 x 3 = [Calculator(18 + 12 * 3) → 54] 54.",
    "The population is 658,893 people. This is 11.4% of the national average of "
    "[Calculator(658,893 / 11.4%) → 5779763.16] 5,763,868 people.",
    "A total of 252 qualifying matches were played, and 723 goals were scored (an average of "
    "[Calculator(723 / 252) → 2.87] 2.87 per match). This is three times less than the "
    "[Calculator(723 * 3) → 2169] 2169 goals last year.",
    "I went to Paris in 1994 and stayed there until 2011, so in total, it was "
    "[Calculator(2011 - 1994) → 17] 17 years.",
    "From this, we have 4 * 30 minutes = [Calculator(4 * 30) → 120] 120 minutes.",
)


@toolrun.tool(examples=EXAMPLES, name="Calculator", timeout=2.0, max_result_chars=64)
def calculator(expression: str) -> str:
    """Arithmetic, rounded to 2 decimals: 400 / 1400, 658,893 × 11.4%, (2 + 3)^2.

    + - * / and powers, parentheses, decimals, percentages ("11.4%"), thousands separators
    ("658,893"), "x" or "×" for times and "÷" for divided by.

    Args:
        expression: the arithmetic to compute, e.g. 400 / 1400
    """
    return format_number(evaluate_exact(expression))


def _normalise(text: str) -> str:
    """Rewrite the forms people and models write into Python arithmetic."""
    text = " ".join(text.split()).strip("= ")  # "2 + 3 =" is a finished question
    for old, new in _REPLACEMENTS.items():
        text = text.replace(old, new)
    text = _SEPARATOR.sub("", text)
    if "%" in text:
        text = _PERCENT_OF.sub("% *", text)
        text = _PERCENT.sub(r"(\1/100)", text)
    return text


def _walk(root: ast.expr, source: str) -> Fraction:
    """Evaluate the tree iteratively: long sums are deep trees, and recursion has a limit."""
    values: list[Fraction] = []
    stack: list[tuple[ast.expr, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if isinstance(node, ast.Constant):
            values.append(_number(node, source))
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.UAdd, ast.USub)):
            if children_done:
                operand = values.pop()
                values.append(-operand if isinstance(node.op, ast.USub) else operand)
            else:
                stack += [(node, True), (node.operand, False)]
        elif isinstance(node, ast.BinOp) and isinstance(node.op, _OPERATORS):
            if children_done:
                right = values.pop()
                left = values.pop()
                values.append(_checked(_apply(node.op, left, right)))
            else:
                stack += [(node, True), (node.right, False), (node.left, False)]
        else:  # its source text, not ast.unparse: that recurses, and 400 calls nest deep
            text = source[node.col_offset : node.end_col_offset or node.col_offset]
            raise CalculatorError(f"not arithmetic: {_clip(text)!r}")
    (result,) = values
    return result


_OPERATORS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow)


def _apply(op: ast.operator, left: Fraction, right: Fraction) -> Fraction:
    if isinstance(op, ast.Add):
        return left + right
    if isinstance(op, ast.Sub):
        return left - right
    if isinstance(op, ast.Mult):
        return left * right
    if isinstance(op, ast.Div):
        if right == 0:
            raise CalculatorError("division by zero")
        return left / right
    return _power(left, right)


def _power(base: Fraction, exponent: Fraction) -> Fraction:
    """Exact for whole exponents, refused before computing when too large; floats otherwise."""
    if base == 0 and exponent < 0:
        raise CalculatorError("division by zero")
    if exponent.denominator == 1:
        if base in (0, 1) or exponent == 0:
            return base ** int(exponent)
        if base == -1:
            return Fraction(-1 if exponent.numerator % 2 else 1)
        size = max(base.numerator.bit_length(), base.denominator.bit_length())
        if (size - 1) * abs(exponent) > MAX_BITS:
            raise CalculatorError("number out of range")
        return base ** int(exponent)
    if base < 0:
        raise CalculatorError("a negative number has no real fractional power")
    try:
        value = float(base) ** float(exponent)
    except (OverflowError, ZeroDivisionError) as exc:
        raise CalculatorError("number out of range") from exc
    if not math.isfinite(value):
        raise CalculatorError("number out of range")
    return Fraction(repr(value))


def _number(node: ast.Constant, source: str) -> Fraction:
    """A literal, read from its source text so that 0.1 is exactly 1/10."""
    if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
        raise CalculatorError(f"not a number: {node.value!r}")
    if isinstance(node.value, int):
        return _checked(Fraction(node.value))
    # The source is one line of ASCII, so offsets are character indices (and this is O(1),
    # where ast.get_source_segment re-splits the whole source for every literal).
    text = source[node.col_offset : node.end_col_offset or node.col_offset]
    match = _NUMBER.fullmatch(text)
    if not match:
        raise CalculatorError(f"not a number: {_clip(text)!r}")
    exponent = int(match[2] or 0)
    if abs(exponent) > MAX_BITS:  # refuse 1e999999999 before building 10**999999999
        raise CalculatorError("number out of range")
    return _checked(Fraction(match[1]) * Fraction(10) ** exponent)


def _checked(value: Fraction) -> Fraction:
    if value.numerator.bit_length() > MAX_BITS or value.denominator.bit_length() > MAX_BITS:
        raise CalculatorError("number out of range")
    return value


def _clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
