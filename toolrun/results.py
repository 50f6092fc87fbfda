"""What a generation returns, and the events ``toolrun.stream()`` yields while it runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "CallFinished",
    "CallStarted",
    "ClientCall",
    "Done",
    "Event",
    "Generation",
    "TextDelta",
    "ToolCall",
]

FinishReason = Literal["eos", "length", "stop", "tool_calls"]
"""Why a generation ended: the model's end of sequence (or turn), ``max_new_tokens``, a stop
string, or calls to tools only the app has (``Generation.client_calls``)."""

Channel = Literal["content", "call", "result"]


@dataclass(frozen=True)
class ToolCall:
    """One call the model made, as the app reads it.

    ``start``/``end`` index ``Generation.text``: for the bracket format ``text[start:end]`` is the
    whole call with its result, ``[Name(args) → result]``; for a chat format it is the call's
    markup. Exactly one of ``result`` and ``error`` is set.
    """

    name: str
    arguments_text: str
    arguments: dict[str, Any] | None
    result: str | None
    error: str | None
    latency_s: float
    start: int
    end: int
    id: str = ""
    """The call's id (as in OpenAI's ``tool_calls``): the model's own where it writes one."""

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class ClientCall:
    """A call to a tool the runtime does not have (``client_tools=``): the app runs it.

    The generation ends with ``finish_reason="tool_calls"``; append ``Generation.messages`` and
    a ``{"role": "tool", "tool_call_id": id, "content": ...}`` message per call, then continue.
    """

    id: str
    name: str
    arguments: dict[str, Any]


@dataclass
class Generation:
    """The outcome of ``toolrun.generate()``."""

    text: str
    calls: list[ToolCall]
    finish_reason: FinishReason
    prompt_tokens: int
    generated_tokens: int
    """Tokens the model chose itself."""
    spliced_tokens: int
    """Tokens the runtime fed in for call results."""
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds spent: ``prefill``, ``decode``, ``tools``, ``splice``, ``total``."""
    token_ids: list[int] = field(default_factory=list)
    """Every token after the prompt, the model's and the spliced ones, as the cache holds them."""
    call_format: str = "toolformer"
    """The call format the generation used (given, or detected from the model)."""
    messages: list[dict[str, Any]] = field(default_factory=list)
    """For chat input: the new assistant and tool messages, OpenAI-style, ready to append."""
    client_calls: list[ClientCall] = field(default_factory=list)
    """Calls for the app to run, when ``finish_reason == "tool_calls"``."""

    @property
    def tokens_per_second(self) -> float:
        decode = self.timings.get("decode", 0.0)
        return self.generated_tokens / decode if decode > 0 else 0.0


@dataclass(frozen=True)
class TextDelta:
    """New text, in order; joining every delta gives ``Generation.text``.

    ``channel`` says what the text is: ``"content"`` (what the model says; bracket calls are part
    of it), ``"call"`` (a chat format's call markup) or ``"result"`` (text the runtime spliced in).
    Content that might be the start of a call's opening is held back until it is clear.
    """

    text: str
    channel: Channel = field(default="content", compare=False)


@dataclass(frozen=True)
class CallStarted:
    """A call is complete (the arrow, or a chat turn that ends with calls): it is about to run.

    ``arguments_text`` is the bracket syntax's argument text, or the JSON of a chat call's
    arguments; ``id`` matches ``ToolCall.id`` in the CallFinished that follows.
    """

    name: str
    arguments_text: str
    id: str = field(default="", compare=False)


@dataclass(frozen=True)
class CallFinished:
    """A call ran; its result (or error) text follows as a TextDelta."""

    call: ToolCall


@dataclass(frozen=True)
class Done:
    """The generation ended."""

    generation: Generation


Event = TextDelta | CallStarted | CallFinished | Done
