"""The Toolformer bracket format: ``[Name(args) → result]``, written inline, run at the arrow.

The grammar itself (markers, argument parsing, rendering) lives in ``syntax.py``; this module is
what the decoding loop needs from it. The model writes ``[Calculator(400 / 1400) →``; the call
runs there and the runtime splices `` 0.29]``, so the model reads the result and goes on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

import torch

from ..syntax import CALL_CLOSE, CALL_OPEN, find_pending_call
from ..tooldef import Tool
from .base import CallFormat, FoundCall, FoundCalls

__all__ = ["ToolformerFormat", "preamble"]


class ToolformerFormat(CallFormat):
    """Inline bracket calls, halted at the arrow (for models trained the Toolformer way)."""

    name = "toolformer"
    at_end_of_turn = False
    openers = (CALL_OPEN,)
    markers: ClassVar[Mapping[str, str]] = {
        CALL_OPEN: "(",
        CALL_CLOSE: ")",
        "→": "=>",
        "->": "=>",
    }

    def find_call(self, text: str, start: int) -> FoundCalls | None:
        pending = find_pending_call(text, start)
        if pending is None:
            return None
        call = FoundCall(pending.name, pending.arguments)
        return FoundCalls([call], pending.start, pending.end)

    def would_open(self, text: str, start: int, piece: str) -> bool:
        return CALL_OPEN in piece  # any "[" may start a call: the tokens are banned outright

    def opening_tokens(self, model: Any) -> torch.Tensor:
        return torch.tensor(model.call_opening_tokens, dtype=torch.long)

    def content_length(self, text: str, start: int) -> int:
        return len(text) - start  # calls are part of the visible text

    def result_text(
        self, calls: Sequence[FoundCall], results: Sequence[str], overshoot: str
    ) -> str:
        spacer = "" if overshoot.endswith((" ", "\n")) else " "
        return spacer + results[0] + CALL_CLOSE

    @staticmethod
    def is_open(text: str, start: int) -> bool:
        """Is there a "[" after ``start`` that no "]" has closed yet?"""
        opened = text.rfind(CALL_OPEN, start)
        return opened >= 0 and CALL_CLOSE not in text[opened:]

    def opening(self, name: str | None = None) -> str:
        if name is None:
            return " " + CALL_OPEN
        return " " + CALL_OPEN + name + "("


def preamble(tools: Iterable[Tool]) -> str:
    """Text that shows a model the tools and how to call them, in the paper's prompt style.

    It lists each tool's signature and description, then the tools' own examples
    (``@toolrun.tool(examples=[...])``), so a large enough base model can call them few-shot.
    """
    tools = list(tools)
    if not tools:
        return ""
    lines = [
        "You can use tools while you write. To call one, write "
        f"{CALL_OPEN}Name(arguments) → and the tool's result follows; then go on writing.",
        "Tools:",
    ]
    for tool in tools:
        description = (tool.description.splitlines() or [""])[0]
        lines.append(f"- {tool.signature}: {description}".rstrip(": "))
    examples = [example for tool in tools for example in tool.examples]
    if examples:
        lines.append("Examples:")
        lines.extend(examples)
    return "\n".join(lines) + "\n\n"
