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
import decimal
import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ARROW",
    "ARROWS",
    "BRACKET_MARKERS",
    "CALL_CLOSE",
    "CALL_OPEN",
    "MAX_ARGUMENT_DEPTH",
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
    "valid_text",
]

CALL_OPEN = "["
CALL_CLOSE = "]"
ARROW = "→"
ARROWS = ("→", "->")

# Longest argument text the parser accepts; longer text is an error, not a slow parse.
MAX_ARGUMENT_CHARS = 4000
# Deepest nesting of brackets, or of the parsed tree, that arguments may have: the standard
# library's ast helpers recurse, and 400 levels (``1+1+...+1``, ``1()()...()``) exhaust the stack.
MAX_ARGUMENT_DEPTH = 32

# What result text must not contain, and what each is replaced with: a result can then neither
# close the call it answers nor open a new one. Call formats pass their own markers.
BRACKET_MARKERS: Mapping[str, str] = {"[": "(", "]": ")", "→": "=>", "->": "=>"}

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
    if _bracket_depth(text) > MAX_ARGUMENT_DEPTH:
        raise ArgumentSyntaxError(f"arguments nested deeper than {MAX_ARGUMENT_DEPTH} levels")
    try:
        tree = ast.parse(f"_({text})", mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise ArgumentSyntaxError(f"cannot parse arguments: {_clip(text)!r}") from exc
    # Flat text can still be a deep tree (a chain of 400 "+"): measured without recursion,
    # before anything recursive (literal_eval, unparse) walks it.
    if _tree_depth(tree) > MAX_ARGUMENT_DEPTH + 2:  # + the Expression and the call around it
        raise ArgumentSyntaxError(f"arguments nested deeper than {MAX_ARGUMENT_DEPTH} levels")
    call = tree.body
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "_"):
        raise ArgumentSyntaxError(f"cannot parse arguments: {_clip(text)!r}")
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
            f"only literal values are allowed, got {_clip(ast.unparse(node))!r}"
        ) from exc


def _bracket_depth(text: str) -> int:
    """The deepest nesting of (), [] and {} outside quoted strings (a cheap pre-parse bound)."""
    depth = deepest = 0
    quote = ""
    escaped = False
    for char in text:
        if quote:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif char in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in ")]}":
            depth = max(depth - 1, 0)
    return deepest


def _tree_depth(tree: ast.AST) -> int:
    """The depth of an ast tree, measured with an explicit stack."""
    deepest = 0
    stack = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return deepest


def _clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def format_arguments(args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None) -> str:
    """The inverse of ``parse_arguments``: Python literals, comma separated."""
    parts = [repr(value) for value in args]
    parts += [f"{key}={value!r}" for key, value in (kwargs or {}).items()]
    return ", ".join(parts)


def render_value(value: Any) -> str:
    """Turn a tool's return value into text: numbers compactly, containers as JSON.

    Raises whatever the value raises when made text (an object whose ``__str__`` fails); the
    registry renders inside its failure boundary, so the model reads that as an error.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        try:
            return str(value)
        except ValueError:  # past sys.get_int_max_str_digits(): 10**5000
            return _scientific(value)
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


def _scientific(value: int) -> str:
    """An integer too long for ``str`` in 10 significant digits: '1e+5000'."""
    context = decimal.Context(prec=10)
    return str(context.create_decimal(value).normalize(context)).replace("E", "e")


def valid_text(text: str) -> str:
    """``text`` as valid Unicode: surrogate pairs joined, lone surrogates replaced by U+FFFD.

    A lone surrogate (``"a\\ud800b"``) cannot be encoded, so it would fail in the tokenizer.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


_WHITESPACE = re.compile(r"\s+")
# C0 controls except tab and newline (folded to spaces below), DEL, and the C1 controls
# (U+0080-U+009F, among them U+009B, the one-character terminal escape CSI).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


_MAX_PASSES = 8


def _remove_all(text: str, tokens: Sequence[str]) -> str:
    """``text`` without any of ``tokens``, removed until none is left (removal can join one)."""
    changed = True
    while changed:
        changed = False
        for token in tokens:
            if token in text:
                text = text.replace(token, "")
                changed = True
    return text


def sanitize_result(
    text: str,
    max_chars: int,
    special_tokens: Iterable[str] = (),
    *,
    markers: Mapping[str, str] | None = None,
) -> str:
    """Make result text safe to splice into a call: it can neither close it nor open a new one.

    In this order: the text is made valid Unicode; control characters are removed; every
    special token (``<|im_end|>``, ``<file_sep>``...) is removed, repeatedly, so that removing
    one cannot assemble another; then each of the call format's ``markers`` is replaced (None:
    the bracket syntax's, brackets become parentheses and arrows "=>"), after the removals, so
    that a removal cannot re-create one (``x -<eos>> y``). Whitespace is folded to single
    spaces and the text is cut to ``max_chars`` characters with an ellipsis.
    """
    markers = BRACKET_MARKERS if markers is None else markers
    text = _CONTROL.sub("", valid_text(text))
    specials = sorted({token for token in special_tokens if token}, key=len, reverse=True)
    replacements = sorted(((m, r) for m, r in markers.items() if m), key=lambda p: -len(p[0]))
    if any(m in r for r in markers.values() for m, _ in replacements):
        raise ValueError(f"a marker's replacement contains a marker: {dict(markers)!r}")
    for _ in range(_MAX_PASSES):  # a replacement can meet its neighbours and form a marker
        before = text
        text = _remove_all(text, specials)
        for marker, replacement in replacements:
            text = text.replace(marker, replacement)
        if text == before:
            break
    else:  # adversarial input that keeps re-forming markers: drop every marker character
        marker_chars = {c for m, _ in replacements for c in m}
        text = _remove_all("".join(c for c in text if c not in marker_chars), specials)
    text = _WHITESPACE.sub(" ", text).strip()
    if len(text) > max_chars:
        text = text[: max(max_chars - 1, 0)].rstrip() + "…"
    return text
