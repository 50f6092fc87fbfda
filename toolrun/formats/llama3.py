"""The Llama 3.1-3.3 format: the whole assistant message is a JSON call.

    {"name": "get_weather", "parameters": {"city": "Paris"}}
    <|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}

Several calls may be separated by ";" or newlines, or given as a JSON list. Results go back as
``ipython`` messages, rendered by the model's chat template.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import ClassVar

from .base import MAX_CALL_CHARS, CallFormat, FoundCall, FoundCalls, json_call, parse_json_call

__all__ = ["Llama3Format"]

PYTHON_TAG = "<|python_tag|>"
_KEYS = ("parameters", "arguments")


class Llama3Format(CallFormat):
    name = "llama3"
    openers = (PYTHON_TAG,)
    separators = ";"
    markers: ClassVar[Mapping[str, str]] = {PYTHON_TAG: "(python_tag)"}

    def find_call(self, text: str, start: int) -> FoundCalls | None:
        body = text[start:]
        stripped = body.lstrip()
        offset = start + len(body) - len(stripped)
        tagged = stripped.startswith(PYTHON_TAG)
        if tagged:
            stripped = stripped[len(PYTHON_TAG) :].lstrip()
        stripped = stripped.rstrip()
        if not tagged and not stripped.startswith(("{", "[{")):
            return None
        calls = _calls(stripped)
        if calls is None:
            if not tagged and '"name"' not in stripped[:200]:
                return None  # JSON content that is not a call
            calls = [parse_json_call(stripped, _KEYS)]
        return FoundCalls(calls, offset, len(text))

    def after_calls(self, text: str, start: int) -> str | None:
        body = text[start:].lstrip()
        if body.startswith(PYTHON_TAG):
            body = body[len(PYTHON_TAG) :].lstrip()
        if not body.startswith(("{", "[{")) or len(body) > MAX_CALL_CHARS:
            return None  # not a call, or too long to parse at every token
        decoder = json.JSONDecoder()
        position = 0
        try:
            while True:  # one object, a list, or several separated by ";" / whitespace
                value, position = decoder.raw_decode(body, position)
                if not isinstance(value, (dict, list)):
                    return None
                rest = body[position:]
                following = len(rest) - len(rest.lstrip(" \t\r\n;"))
                if not rest[following:].startswith(("{", "[")):
                    return rest
                position += following
        except (ValueError, RecursionError):
            return None  # a call still being written

    def leads_to_call(self, written: str) -> bool:
        """Another call: a JSON object or list, or the python tag, written or on its way."""
        return written.startswith(("{", "[")) or super().leads_to_call(written)

    def would_open(self, text: str, start: int, piece: str) -> bool:
        if PYTHON_TAG in piece:
            return True
        before = text[start:].strip()
        return not before and piece.lstrip().startswith("{")

    def content_length(self, text: str, start: int) -> int:
        body = text[start:]
        stripped = body.lstrip()
        if not stripped or stripped.startswith(("{", "[", "<")):
            return 0  # may yet be a call: nothing is content until the turn ends
        return len(body)

    def opening(self, name: str | None = None) -> str:
        if name is None:
            return '{"name": "'
        return '{"name": ' + json.dumps(name) + ', "parameters": '


def _calls(text: str) -> list[FoundCall] | None:
    """Parse one object, a list of objects, or objects separated by ";" / newlines."""
    if len(text) > MAX_CALL_CHARS:
        return None
    decoder = json.JSONDecoder()
    found: list[FoundCall] = []
    position = 0
    try:
        while position < len(text):
            value, position = decoder.raw_decode(text, position)
            items = value if isinstance(value, list) else [value]
            found.extend(json_call(item, _KEYS) for item in items)
            while position < len(text) and text[position] in " \t\r\n;":
                position += 1
    except (ValueError, RecursionError):
        return None
    if not found or any(call.error and not call.name for call in found):
        return None
    return found
