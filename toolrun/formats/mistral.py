"""The Mistral format: ``[TOOL_CALLS]`` and the calls, after the model's own text.

    [TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "a1b2c3d4e"}]
    [TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}          (tokenizer v11 and later)

Results go back as ``[TOOL_RESULTS]`` blocks, rendered by the model's chat template. Mistral's
templates want call ids of nine letters and digits, which the runtime makes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import ClassVar

from .base import MAX_CALL_CHARS, CallFormat, FoundCall, FoundCalls, json_call

__all__ = ["MistralFormat"]

OPEN = "[TOOL_CALLS]"
ARGS = "[ARGS]"
_KEYS = ("arguments", "parameters")
_NAMED = re.compile(r"\s*([A-Za-z_][\w.-]*)\s*" + re.escape(ARGS), re.DOTALL)


class MistralFormat(CallFormat):
    name = "mistral"
    openers = (OPEN,)
    markers: ClassVar[Mapping[str, str]] = {
        OPEN: "(TOOL_CALLS)",
        ARGS: "(ARGS)",
        "[TOOL_RESULTS]": "(TOOL_RESULTS)",
        "[/TOOL_RESULTS]": "(/TOOL_RESULTS)",
        "[INST]": "(INST)",
        "[/INST]": "(/INST)",
        "[CALL_ID]": "(CALL_ID)",
    }
    id_length = 9

    def find_call(self, text: str, start: int) -> FoundCalls | None:
        first = text.find(OPEN, start)
        if first < 0:
            return None
        calls: list[FoundCall] = []
        for chunk in text[first:].split(OPEN)[1:]:
            calls.extend(_parse_chunk(chunk.strip()))
        return FoundCalls(calls, first, len(text))

    def after_calls(self, text: str, start: int) -> str | None:
        last = text.rfind(OPEN, start)
        if last < 0:
            return None
        body = text[last + len(OPEN) :].lstrip()
        named = _NAMED.match(body)
        if named is not None:  # name[ARGS]{...}
            body = body[named.end() :].lstrip()
        elif not body.startswith(("[", "{")):
            return None
        if len(body) > MAX_CALL_CHARS:
            return None  # too long to parse at every token (find_call reports it)
        try:
            _, end = json.JSONDecoder().raw_decode(body)
        except (ValueError, RecursionError):
            return None  # the call is still being written
        return body[end:]

    def opening(self, name: str | None = None) -> str:
        if name is None:
            return OPEN + '[{"name": "'
        return OPEN + '[{"name": ' + json.dumps(name) + ', "arguments": '


def _parse_chunk(chunk: str) -> list[FoundCall]:
    if not chunk:
        return []
    if chunk.startswith(("[", "{")):
        try:
            value = json.loads(chunk)
        except (ValueError, RecursionError) as exc:
            return [FoundCall("", {}, error=f"malformed JSON in the call: {exc}")]
        items = value if isinstance(value, list) else [value]
        return [json_call(item, _KEYS) for item in items]
    named = _NAMED.match(chunk)
    if named is None:
        return [FoundCall("", {}, error=f"cannot read the call {chunk[:60]!r}")]
    name, rest = named.group(1), chunk[named.end() :].strip()
    try:
        arguments = json.loads(rest) if rest else {}
    except (ValueError, RecursionError) as exc:
        return [FoundCall(name, {}, error=f"malformed JSON in the call: {exc}")]
    if not isinstance(arguments, dict):
        return [FoundCall(name, {}, error="the call's arguments must be a JSON object")]
    return [FoundCall(name, arguments)]
