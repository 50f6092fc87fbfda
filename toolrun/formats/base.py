"""What a call format is: how a model writes a call, when it is ready to run, what goes back.

A format is data plus a few pure functions over decoded text; it never touches a model's cache
or a tool. The sequence state (``sequence.py``) asks it two questions as text arrives:

- ``find_call(text, start)``: is a call complete and ready to run now? Inline formats (the
  bracket syntax) answer mid-text, at the call's halt marker; chat formats answer when the
  assistant's turn ends (``at_end_of_turn=True``), with every call the turn holds.
- ``would_open(text, start, piece)``: would writing ``piece`` next open a call? That is how calls
  are disabled, whatever tokens spell the opening.

After the calls ran, an inline format gives the text to splice (``result_text``); a chat format
leaves it to the model's own chat template (``chat.py`` renders the tool messages).
"""

from __future__ import annotations

import contextlib
import json
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

__all__ = ["CallFormat", "FoundCall", "FoundCalls", "json_call", "parse_json_call"]


@dataclass(frozen=True)
class FoundCall:
    """One call as the model wrote it.

    ``arguments`` is the bracket syntax's text between the parentheses, or the JSON object a chat
    format's call carries. A call that cannot run as written (malformed JSON, no name) has
    ``error`` set: the model reads it in the tool's response and generation goes on.
    """

    name: str
    arguments: str | Mapping[str, Any]
    error: str | None = None
    id: str | None = None
    """The id the model wrote (Mistral's ``"id"``), else the runtime makes one."""


@dataclass(frozen=True)
class FoundCalls:
    """The calls ready to run, and where their markup sits in the text.

    ``text[start:end]`` is the markup; for an inline format ``end`` is just after the halt
    marker, and anything the model wrote past it is dropped when the result is spliced.
    """

    calls: list[FoundCall]
    start: int
    end: int


class CallFormat(ABC):
    """How one family of models writes tool calls. Subclasses are stateless."""

    name: ClassVar[str]
    at_end_of_turn: ClassVar[bool] = True
    """Calls run when the assistant's turn ends (chat formats), not at a marker mid-text."""
    openers: ClassVar[tuple[str, ...]] = ()
    """Text that opens a call; streamed content holds back a partial opener until it resolves."""
    markers: ClassVar[Mapping[str, str]] = {}
    """Marker text a tool result must never contain, and what replaces it."""
    separators: ClassVar[str] = ""
    """What may stand between two calls of a turn besides whitespace (Llama 3's ";")."""

    @abstractmethod
    def find_call(self, text: str, start: int) -> FoundCalls | None:
        """The calls in ``text[start:]`` that are complete and ready to run, or None."""

    def would_open(self, text: str, start: int, piece: str) -> bool:
        """Would appending ``piece`` to ``text`` open a call after ``start``?"""
        joined = text[start:] + piece
        tail = max(0, len(joined) - len(piece) - max((len(o) for o in self.openers), default=0))
        return any(opener in joined[tail:] for opener in self.openers)

    def opening_tokens(self, model: Any) -> torch.Tensor:
        """The token ids banned while calls are disabled (built once per model).

        An opener the tokenizer holds as one token (Qwen's ``<tool_call>``) bans just that
        token. One spelled over several tokens bans every token holding its first character,
        as the bracket format bans every "[": refusing only the token that would complete it
        leaves a finetuned model writing ``<tool_call`` and a near miss instead of an answer.
        """
        cache: dict[str, torch.Tensor] = model.__dict__.setdefault("_toolrun_openings", {})
        if self.name not in cache:
            banned: set[int] = set()
            specials = set(model.special_tokens)  # "<|im_end|>" must stay: it ends the turn
            for opener in self.openers:
                ids = model.encode(opener)
                if len(ids) == 1:
                    banned.add(ids[0])
                else:
                    banned.update(
                        i
                        for i, text in enumerate(model.token_texts)
                        if opener[0] in text and text not in specials
                    )
            cache[self.name] = torch.tensor(sorted(banned - model.eos_token_ids), dtype=torch.long)
        return cache[self.name]

    def after_calls(self, text: str, start: int) -> str | None:
        """What the model wrote after the last complete call of ``text[start:]``, or None when
        there is none (or a new call is open). From there it may only end its turn or open
        another call: a tool response of its own, or more text, is never its to write."""
        return None

    def leads_to_call(self, written: str) -> bool:
        """Does ``written`` (after a complete call and its separators) still lead to a call?"""
        return any(o.startswith(written) or written.startswith(o) for o in self.openers)

    def turn_end_tokens(self, model: Any, tail: str, more_calls: bool) -> torch.Tensor:
        """The tokens allowed after a complete call that ``tail`` follows: the end of the turn, a
        little whitespace, and (``more_calls``) whatever still leads to another call."""
        cache: dict[tuple[str, str, bool], torch.Tensor] = model.__dict__.setdefault(
            "_toolrun_turn_ends", {}
        )
        key = (self.name, tail, more_calls)
        if key not in cache:
            allowed = set(model.eos_token_ids)
            skip = " \t\r\n" + (self.separators if more_calls else "")
            for i, piece in enumerate(model.token_texts):
                joined = tail + piece
                written = joined.lstrip(skip)
                if not written:
                    if len(joined) <= _WHITESPACE_AFTER_CALL:
                        allowed.add(i)
                elif more_calls and self.leads_to_call(written):
                    allowed.add(i)
            cache[key] = torch.tensor(sorted(allowed), dtype=torch.long)
        return cache[key]

    def content_length(self, text: str, start: int) -> int:
        """How much of ``text[start:]`` is visible content for sure: up to the first opener, and
        short of a trailing partial opener (which may still turn into one)."""
        segment = text[start:]
        cut = len(segment)
        for opener in self.openers:
            found = segment.find(opener)
            if found >= 0:
                cut = min(cut, found)
        for opener in self.openers:
            for size in range(min(len(opener) - 1, cut), 0, -1):
                if segment[:cut].endswith(opener[:size]):
                    cut -= size
                    break
        return cut

    def opening(self, name: str | None = None) -> str:
        """Text that opens a call (to ``name``, when given), for forcing one: ``tool_choice``."""
        raise NotImplementedError(f"{self.name} cannot force a call")

    def result_text(
        self, calls: Sequence[FoundCall], results: Sequence[str], overshoot: str
    ) -> str | None:
        """The text to splice after the calls, or None when the chat template renders it."""
        return None


_WHITESPACE_AFTER_CALL = 4
"""Characters of whitespace a model may write between a complete call and its next move."""

MAX_CALL_CHARS = 20_000
"""Longest call markup a chat format parses; longer is an error, not a slow parse."""


def parse_json_call(text: str, arguments_keys: Sequence[str]) -> FoundCall:
    """One ``{"name": ..., "<arguments key>": {...}}`` object as a call; problems become errors.

    Arguments given as a JSON string holding an object (some models write them so) are decoded.
    """
    if len(text) > MAX_CALL_CHARS:
        return FoundCall("", {}, error=f"the call is longer than {MAX_CALL_CHARS} characters")
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:
        return FoundCall(_guess_name(text), {}, error=f"malformed JSON in the call: {exc}")
    return json_call(value, arguments_keys)


def json_call(value: Any, arguments_keys: Sequence[str]) -> FoundCall:
    """A decoded JSON value as a call (see ``parse_json_call``)."""
    if not isinstance(value, dict):
        return FoundCall("", {}, error="a call must be a JSON object with a name")
    name = value.get("name")
    if not isinstance(name, str) or not name:
        return FoundCall("", {}, error='the call has no "name"')
    arguments: Any = {}
    for key in arguments_keys:
        if key in value:
            arguments = value[key]
            break
    if isinstance(arguments, str):
        with contextlib.suppress(ValueError, RecursionError):
            arguments = json.loads(arguments) if arguments.strip() else {}
    call_id = value.get("id")
    call_id = call_id if isinstance(call_id, str) and call_id else None
    if not isinstance(arguments, dict):
        return FoundCall(name, {}, error="the call's arguments must be a JSON object", id=call_id)
    return FoundCall(name, arguments, id=call_id)


def _guess_name(text: str) -> str:
    found = _NAME_IN_JSON.search(text)
    return found.group(1) if found else ""


_NAME_IN_JSON = re.compile(r'"name"\s*:\s*"([^"]{1,100})"')
