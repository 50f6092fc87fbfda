"""One sequence's decoding state, shared by the single-sequence loop and batched decoding.

``SequenceState`` turns next-token logits into a token (``pick``), tracks the decoded text and
finds call heads in it (``accept``), and builds the tokens to feed after a call (``splice``). It
never touches a model's cache: drivers (``loop.py`` for one sequence, ``batch.py`` for many) own
the forward passes and run the tools.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch

from .backends.base import Model
from .errors import GenerationOptionsError
from .options import DecodingOptions, logits_processors
from .registry import DEFAULT_MAX_RESULT_CHARS, CallOutcome, CallPolicy, ToolContext, ToolRegistry
from .results import FinishReason, Generation, ToolCall
from .syntax import CallSpan, find_pending_call, sanitize_result

__all__ = ["Detokenizer", "SequenceState", "Step"]


class Detokenizer:
    """Incremental decoding that only releases complete characters.

    It decodes a short window of recent tokens and emits what the newest token added, so a
    multi-byte character split over tokens appears once it is whole, and tokenizers that drop a
    leading space on a window's first token still decode correctly.
    """

    def __init__(self, model: Model) -> None:
        self.model = model
        self.ids: list[int] = []
        self.prefix = 0
        self.read = 0

    def push(self, token: int) -> str:
        self.ids.append(token)
        before = self.model.decode(self.ids[self.prefix : self.read])
        after = self.model.decode(self.ids[self.prefix :])
        if len(after) <= len(before) or after.endswith("\ufffd"):
            return ""
        self.prefix, self.read = self.read, len(self.ids)
        return after[len(before) :]

    def flush(self) -> str:
        """Release whatever is held back (bytes of an unfinished character at the very end)."""
        before = self.model.decode(self.ids[self.prefix : self.read])
        after = self.model.decode(self.ids[self.prefix :])
        self.prefix = self.read = len(self.ids)
        return after[len(before) :]

    @property
    def settled(self) -> bool:
        """True when every pushed token has been released as text."""
        return self.read == len(self.ids)

    def splice(self, drop_last: bool, ids: list[int]) -> None:
        """Replace the last token (optionally) and append ``ids``, already released as text."""
        if drop_last:
            self.ids.pop()
        start = len(self.ids)
        self.ids.extend(ids)
        self.prefix, self.read = start, len(self.ids)


@dataclass
class Step:
    """What accepting one token did: ``kind`` says what the driver does next.

    - "text": feed ``[token]`` and continue (``delta`` may be empty while a character is split);
    - "call": run ``call`` (``delta`` is the text up to its arrow), then feed ``splice(...)``;
    - "done": the sequence finished (``delta`` is its last text).
    """

    kind: Literal["text", "call", "done"]
    delta: str = ""
    call: CallSpan | None = None


@dataclass
class SequenceState:
    """The decoding state of one sequence: text, calls, token history and counters."""

    model: Model
    registry: ToolRegistry
    options: DecodingOptions
    prompt_ids: list[int]
    text: str = ""
    calls: list[ToolCall] = field(default_factory=list)
    generated: int = 0
    spliced: int = 0
    finish: FinishReason | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.prompt_ids:
            raise GenerationOptionsError("the prompt is empty")
        self.history = list(self.prompt_ids)
        self.policy = CallPolicy(max_calls=self.options.max_calls, approve=self.options.approve)
        self.processors = logits_processors(self.options)
        self.generator: torch.Generator | None = None
        self._detok = Detokenizer(self.model)
        self._scan_from = 0  # calls are looked for after the last splice
        self._longest_stop = max((len(s) for s in self.options.stop), default=0)
        self._last_token = -1
        self._drop_token = False
        self._overshoot = ""
        self._head = ""
        for key in ("prefill", "decode", "tools", "splice"):
            self.timings.setdefault(key, 0.0)

    @classmethod
    def for_prompt(
        cls,
        model: Model,
        registry: ToolRegistry,
        options: DecodingOptions,
        prompt: str | Sequence[int],
    ) -> SequenceState:
        ids = (
            model.bos_token_ids + model.encode(prompt) if isinstance(prompt, str) else list(prompt)
        )
        return cls(model, registry, options, ids)

    @property
    def done(self) -> bool:
        return self.finish is not None

    def pick(self, logits: torch.Tensor) -> int:
        """Choose the next token from raw next-token logits (1-D)."""
        opts, model = self.options, self.model
        if opts.do_sample and opts.seed is not None and self.generator is None:
            self.generator = torch.Generator(device=logits.device).manual_seed(opts.seed)
        scores = logits.unsqueeze(0).float()
        if not (opts.allow_calls and not self.policy.exhausted):
            scores = scores.clone()
            scores[0, model.call_opening_index(scores.device)] = float("-inf")
        elif opts.api_start_top_k and not _call_is_open(self.text, self._scan_from):
            k = min(opts.api_start_top_k, scores.shape[-1])
            if model.call_start_token in torch.topk(scores[0], k).indices.tolist():
                return model.call_start_token
        if self.processors:
            input_ids = torch.tensor([self.history], device=scores.device)
            for processor in self.processors:
                scores = processor(input_ids, scores)
        if not opts.do_sample:
            return int(torch.argmax(scores[0]))
        probs = torch.softmax(scores[0], dim=-1)
        return int(torch.multinomial(probs, 1, generator=self.generator))

    def accept(self, token: int) -> Step:
        """Record a picked token; say whether to feed it, run a call, or stop."""
        self.generated += 1
        if token in self.model.eos_token_ids:
            return self._finish("eos")
        self.history.append(token)
        self._last_token = token
        settled_before = self._detok.settled
        delta = self._detok.push(token)
        before = len(self.text)
        self.text += delta

        if self.options.stop and delta:
            cut = _find_stop(self.text, self.options.stop, max(0, before - self._longest_stop))
            if cut is not None:
                head = self.text[before:cut]
                self.text = self.text[:cut]
                self.finish = "stop"
                return Step("done", head)

        pending = None
        if delta and ("→" in delta or ">" in delta):
            pending = find_pending_call(self.text, self._scan_from)
        if pending is None:
            if self.generated >= self.options.max_new_tokens:
                return self._finish("length", delta)
            return Step("text", delta)

        # A call head is complete. Text the arrow's token wrote past the arrow is dropped (the
        # model rewrites it after the result) when the token can be cleanly taken back.
        overshoot = self.text[pending.end :]
        self._drop_token = bool(overshoot.strip()) and settled_before and pending.end >= before
        if self._drop_token:
            self._head = self.text[before : pending.end]
            self.text = self.text[: pending.end]
            self._overshoot = ""
            return Step("call", self._head, pending)
        self._head, self._overshoot = "", overshoot
        return Step("call", delta, pending)

    def call_context(self, call: CallSpan) -> ToolContext:
        found = self.registry.get(call.name)
        return ToolContext(model=self.model, tool_name=found.name if found else call.name)

    def splice(self, call: CallSpan, outcome: CallOutcome) -> tuple[list[int], str]:
        """Record a call's outcome; return the tokens to feed and the text they add."""
        found = self.registry.get(call.name)
        limit = found.max_result_chars if found else DEFAULT_MAX_RESULT_CHARS
        result_text = sanitize_result(outcome.text, limit, self.model.special_tokens)
        spacer = "" if self._overshoot.endswith((" ", "\n")) else " "
        splice_text = spacer + result_text + "]"
        splice_ids = self.model.encode(splice_text)
        if self._drop_token:
            self.history.pop()
            splice_ids = self.model.encode(self._head) + splice_ids
            fed = splice_ids
        else:
            fed = [self._last_token, *splice_ids]
        self.history.extend(splice_ids)
        self._detok.splice(self._drop_token, splice_ids)
        self.spliced += len(splice_ids)
        self.text += splice_text
        self.calls.append(
            ToolCall(
                name=found.name if found else call.name,
                arguments_text=call.arguments,
                arguments=outcome.arguments,
                result=result_text if outcome.error is None else None,
                error=outcome.error,
                latency_s=outcome.latency_s,
                start=call.start,
                end=len(self.text),
            )
        )
        self._scan_from = len(self.text)
        return fed, splice_text

    def after_splice(self) -> Step | None:
        """A length limit reached by the call's own tokens ends the sequence here."""
        if self.generated >= self.options.max_new_tokens:
            return self._finish("length")
        return None

    def result(self) -> Generation:
        return Generation(
            text=self.text,
            calls=list(self.calls),
            finish_reason=self.finish or "length",
            prompt_tokens=len(self.prompt_ids),
            generated_tokens=self.generated - (self.finish == "eos"),
            spliced_tokens=self.spliced,
            timings=dict(self.timings),
            token_ids=self.history[len(self.prompt_ids) :],
        )

    def _finish(self, reason: FinishReason, delta: str = "") -> Step:
        self.finish = reason
        tail = self._detok.flush()
        self.text += tail
        return Step("done", delta + tail)


def _call_is_open(text: str, start: int) -> bool:
    """Is there a "[" after ``start`` that no "]" has closed yet?"""
    opened = text.rfind("[", start)
    return opened >= 0 and "]" not in text[opened:]


def _find_stop(text: str, stops: tuple[str, ...], start: int) -> int | None:
    positions = [p for p in (text.find(s, start) for s in stops) if p >= 0]
    return min(positions) if positions else None
