"""The Hermes format (Hermes 2/3, Qwen2.5, Qwen3): ``<tool_call>{json}</tool_call>`` in the turn.

    <tool_call>
    {"name": "get_weather", "arguments": {"city": "Paris"}}
    </tool_call>

Results go back as ``<tool_response>`` blocks, rendered by the model's chat template (or by
toolrun's built-in Hermes template for ChatML models whose template knows no tools).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import ClassVar

from .base import CallFormat, FoundCalls, parse_json_call

__all__ = ["HermesFormat"]

OPEN = "<tool_call>"
CLOSE = "</tool_call>"
_BLOCK = re.compile(re.escape(OPEN) + r"(.*?)(?:" + re.escape(CLOSE) + r"|\Z)", re.DOTALL)


class HermesFormat(CallFormat):
    name = "hermes"
    openers = (OPEN,)
    markers: ClassVar[Mapping[str, str]] = {
        OPEN: "(tool_call)",
        CLOSE: "(/tool_call)",
        "<tool_response>": "(tool_response)",
        "</tool_response>": "(/tool_response)",
    }

    def find_call(self, text: str, start: int) -> FoundCalls | None:
        first = text.find(OPEN, start)
        if first < 0:
            return None
        calls = []
        end = first
        for block in _BLOCK.finditer(text, first):
            body = block.group(1).strip()
            calls.append(parse_json_call(body, ("arguments", "parameters")))
            end = block.end()
        return FoundCalls(calls, first, end)

    def after_calls(self, text: str, start: int) -> str | None:
        close = text.rfind(CLOSE, start)
        if close < 0:
            return None
        tail = text[close + len(CLOSE) :]
        return None if OPEN in tail else tail

    def opening(self, name: str | None = None) -> str:
        if name is None:
            return OPEN + '\n{"name": "'
        return OPEN + '\n{"name": ' + json.dumps(name) + ', "arguments": '
