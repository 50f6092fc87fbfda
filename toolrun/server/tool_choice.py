"""``tool_choice`` as decoding: "none" bans calls; "required" and a named function make the reply
begin with the call format's opening (and the function's name), after which the model goes on
freely.

The openings are the beginnings of a call in each format, as its parser reads them:

    toolformer   [Name(
    hermes       <tool_call>\\n{"name": "Name", "arguments":
    llama3       {"name": "Name", "parameters":
    mistral      [TOOL_CALLS][{"name": "Name", "arguments":
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..backends.base import Model

__all__ = ["ForcePrefix", "call_opening"]

# (any call, a call of {name}) for each format
_OPENINGS = {
    "toolformer": ("[", "[{name}("),
    "hermes": ("<tool_call>\n", '<tool_call>\n{{"name": "{name}", "arguments": '),
    "llama3": ('{"name": "', '{{"name": "{name}", "parameters": '),
    "mistral": ("[TOOL_CALLS]", '[TOOL_CALLS][{{"name": "{name}", "arguments": '),
}


def call_opening(format_name: str, name: str | None) -> str | None:
    """The text that starts a call in this format (of ``name`` when given); None if unknown."""
    openings = _OPENINGS.get(format_name)
    if openings is None:
        return None
    return openings[0] if name is None else openings[1].format(name=name)


class ForcePrefix:
    """A logits processor that makes the reply begin with ``ids``, then leaves the model free.

    It counts from the first position it sees (the end of the prompt), so one instance serves
    exactly one sequence.
    """

    def __init__(self, model: Model, text: str) -> None:
        self.ids: Sequence[int] = model.encode(text)
        self.start: int | None = None

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.start is None:
            self.start = int(input_ids.shape[1])
        step = int(input_ids.shape[1]) - self.start
        if 0 <= step < len(self.ids):
            forced = torch.full_like(scores, float("-inf"))
            forced[:, self.ids[step]] = 0.0
            return forced
        return scores
