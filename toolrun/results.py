"""What a generation returns, and the events ``toolrun.stream()`` yields while it runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "CallFinished",
    "CallStarted",
    "Done",
    "Event",
    "Generation",
    "TextDelta",
    "ToolCall",
]

FinishReason = Literal["eos", "length", "stop"]


@dataclass(frozen=True)
class ToolCall:
    """One call the model made, as the app reads it.

    ``start``/``end`` index ``Generation.text``: ``text[start:end]`` is the whole call with its
    result, ``[Name(args) → result]``. Exactly one of ``result`` and ``error`` is set.
    """

    name: str
    arguments_text: str
    arguments: dict[str, Any] | None
    result: str | None
    error: str | None
    latency_s: float
    start: int
    end: int

    @property
    def ok(self) -> bool:
        return self.error is None


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

    @property
    def tokens_per_second(self) -> float:
        decode = self.timings.get("decode", 0.0)
        return self.generated_tokens / decode if decode > 0 else 0.0


@dataclass(frozen=True)
class TextDelta:
    """New text, in order; joining every delta gives ``Generation.text``."""

    text: str


@dataclass(frozen=True)
class CallStarted:
    """The model wrote the arrow: the call is about to run."""

    name: str
    arguments_text: str


@dataclass(frozen=True)
class CallFinished:
    """A call ran; its result (or error) text follows as a TextDelta."""

    call: ToolCall


@dataclass(frozen=True)
class Done:
    """The generation ended."""

    generation: Generation


Event = TextDelta | CallStarted | CallFinished | Done
