"""The call grammar: how a model writes a tool call inline, and how results go back in.

A call is written ``[Name(args)]`` and executed as ``[Name(args) → result]``. The model opens
it with "[" and a tool name, writes the arguments, then the arrow ("→", or "->"); the runtime
stops there, runs the tool and appends " result]" itself.

Markers are matched on decoded text, never on token ids: tokenizers merge them with their
neighbours (SmolLM2 has " →", ")]" and "=[" as single tokens) or split a multi-byte arrow across
two tokens.
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ARROW",
    "ARROWS",
    "CALL_CLOSE",
    "CALL_OPEN",
    "ArgumentSyntaxError",
    "CallSpan",
    "find_pending_call",
    "format_arguments",
    "iter_calls",
    "parse_arguments",
    "render_call",
    "render_value",
    "sanitize_result",
    "strip_calls",
]

CALL_OPEN = "["
CALL_CLOSE = "]"
ARROW = "→"
ARROWS = ("→", "->")

# Longest argument text the parser accepts; longer text is an error, not a slow parse.
MAX_ARGUMENT_CHARS = 4000

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_OPENING = re.compile(r"\[(?=" + _NAME + r"\()")
# From just after "[": name, "(", arguments, ")" and the arrow. Arguments are matched lazily so
# that the first ")" followed by an arrow ends them; parentheses inside are kept.
_PENDING = re.compile(r"(?P<name>" + _NAME + r")\((?P<args>.*?)\)[ \t]*(?:→|->)", re.DOTALL)
_COMPLETE = re.compile(
    r"\[(?P<name>" + _NAME + r")\((?P<args>[^\]\n]*?)\)"
    r"(?:[ \t]*(?:→|->)[ \t]*(?P<result>[^\]\[\n]*?))?[ \t]*\]"
)


class ArgumentSyntaxError(ValueError):
    """The text between the parentheses is not a valid argument list."""


@dataclass(frozen=True)
class CallSpan:
    """A call found in text: ``text[start:end]`` is the whole call as written."""

    name: str
    arguments: str
    start: int
    end: int
    result: str | None = None


def find_pending_call(text: str, start: int = 0) -> CallSpan | None:
    """Find a call in ``text[start:]`` whose arrow has been written, so that it can run now.

    ``end`` is the index just after the arrow. The right-most opening that parses wins, so an
    unrelated "[" earlier in the text (or a list inside the arguments) does not capture the call.
    """
    tail = text[start:]
    if "→" not in tail and "->" not in tail:
        return None
    openings = [m.start() for m in _OPENING.finditer(tail)]
    for pos in reversed(openings):
        match = _PENDING.match(tail, pos + 1)
        if match is not None:
            return CallSpan(
                name=match["name"],
                arguments=match["args"].strip(),
                start=start + pos,
                end=start + match.end(),
            )
    return None


def iter_calls(text: str) -> Iterator[CallSpan]:
    """Every complete call in ``text``: ``[Name(args) → result]`` or ``[Name(args)]``."""
    for match in _COMPLETE.finditer(text):
        result = match["result"]
        yield CallSpan(
            name=match["name"],
            arguments=match["args"].strip(),
            start=match.start(),
            end=match.end(),
            result=None if result is None else result.strip(),
        )


def strip_calls(text: str) -> str:
    """Remove every complete call (and the space before it) from ``text``."""
    pieces: list[str] = []
    last = 0
    for call in iter_calls(text):
        cut = call.start - 1 if call.start > 0 and text[call.start - 1] == " " else call.start
        pieces.append(text[last : max(cut, last)])
        last = call.end
    pieces.append(text[last:])
    return "".join(pieces)


def render_call(name: str, arguments: str, result: str | None = None) -> str:
    """``[name(arguments) → result]``, or ``[name(arguments)]`` when there is no result."""
    if result is None:
        return f"{CALL_OPEN}{name}({arguments}){CALL_CLOSE}"
    return f"{CALL_OPEN}{name}({arguments}) {ARROW} {result}{CALL_CLOSE}"


def parse_arguments(text: str) -> tuple[list[Any], dict[str, Any]]:
    """Parse an argument list with Python's ``ast``: ``1, "a, b", k=[2, 3]``.

    Accepts literals (numbers, strings, lists, tuples, dicts, sets, True/False/None) as positional
    and keyword arguments. A bare identifier is taken as a string (``Weather(Paris)``), since
    models rarely quote single words. Anything else raises ArgumentSyntaxError.
    """
    if not text.strip():
        return [], {}
    if len(text) > MAX_ARGUMENT_CHARS:
        raise ArgumentSyntaxError(f"arguments longer than {MAX_ARGUMENT_CHARS} characters")
    try:
        tree = ast.parse(f"_({text})", mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise ArgumentSyntaxError(f"cannot parse arguments: {text!r}") from exc
    call = tree.body
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "_"):
        raise ArgumentSyntaxError(f"cannot parse arguments: {text!r}")
    args = [_literal(node) for node in call.args]
    kwargs: dict[str, Any] = {}
    for keyword in call.keywords:
        if keyword.arg is None:
            raise ArgumentSyntaxError("'**' is not allowed in tool arguments")
        kwargs[keyword.arg] = _literal(keyword.value)
    return args, kwargs


def _literal(node: ast.expr) -> Any:
    if isinstance(node, ast.Starred):
        raise ArgumentSyntaxError("'*' is not allowed in tool arguments")
    if isinstance(node, ast.Name):
        return node.id
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError) as exc:
        raise ArgumentSyntaxError(
            f"only literal values are allowed, got {ast.unparse(node)!r}"
        ) from exc


def format_arguments(args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None) -> str:
    """The inverse of ``parse_arguments``: Python literals, comma separated."""
    parts = [repr(value) for value in args]
    parts += [f"{key}={value!r}" for key, value in (kwargs or {}).items()]
    return ", ".join(parts)


def render_value(value: Any) -> str:
    """Turn a tool's return value into text: numbers compactly, containers as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value) and value == int(value) and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.10g}"
    if hasattr(value, "model_dump_json"):
        return str(value.model_dump_json())
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return str(value)


_WHITESPACE = re.compile(r"\s+")


def sanitize_result(
    text: str,
    max_chars: int,
    special_tokens: Iterable[str] = (),
    *,
    markers: Mapping[str, str] | None = None,
) -> str:
    """Make result text safe to splice: it can neither close the call nor open a new one.

    Special tokens (``<|im_end|>``...) are removed (repeatedly, so that removing one cannot
    assemble another), then the format's ``markers`` are replaced (by default the bracket
    syntax's: brackets become parentheses, arrows "=>"), whitespace is folded to single spaces,
    and the text is cut to ``max_chars`` characters with an ellipsis.
    """
    specials = [token for token in special_tokens if token]
    changed = True
    while changed and specials:
        changed = False
        for token in specials:
            if token in text:
                text = text.replace(token, "")
                changed = True
    replacements = _BRACKET_MARKERS if markers is None else markers
    for marker, replacement in replacements.items():
        text = text.replace(marker, replacement)
    text = _WHITESPACE.sub(" ", text).strip()
    if len(text) > max_chars:
        text = text[: max(max_chars - 1, 0)].rstrip() + "…"
    return text


_BRACKET_MARKERS = {CALL_OPEN: "(", CALL_CLOSE: ")", "→": "=>", "->": "=>"}
