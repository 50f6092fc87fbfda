"""The decoding loop: decode, watch for a call, run it at the arrow, splice the result, resume.

One step of the loop, top to bottom:

1. adjust the next-token scores (calls banned when disabled or over the cap; transformers'
   logits processors for temperature, top-k, top-p, repetition penalty, the app's own);
2. pick a token: the paper's rule forces the call-start token when it is in the top k,
   otherwise greedy or sampled;
3. decode it incrementally and look for a finished call head ``[Name(args) →`` in the text;
4. no call: feed the token and continue. A call: run it through the registry, then feed the
   token and " result]" together on top of the existing cache, never re-encoding the context.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .backends.base import Model
from .errors import GenerationOptionsError
from .registry import DEFAULT_MAX_RESULT_CHARS, CallPolicy, ToolContext, ToolRegistry
from .results import CallFinished, CallStarted, Done, Event, Generation, TextDelta, ToolCall
from .syntax import find_pending_call, sanitize_result

__all__ = ["DecodingOptions", "generate", "stream"]

# Generation options the loop honours, with transformers' names and meanings.
_SAMPLING_OPTIONS = ("do_sample", "temperature", "top_k", "top_p", "repetition_penalty")


@dataclass
class DecodingOptions:
    """Everything that shapes one generation besides the prompt, the model and the tools."""

    max_new_tokens: int = 128
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    repetition_penalty: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    allow_calls: bool = True
    api_start_top_k: int = 0
    max_calls: int | None = None
    approve: Callable[[str, dict[str, Any]], bool] | None = None
    logits_processor: Sequence[Callable[..., torch.Tensor]] = ()

    @classmethod
    def build(cls, **options: Any) -> DecodingOptions:
        """Validate keyword options (transformers' spellings accepted) into DecodingOptions."""
        config = options.pop("generation_config", None)
        if config is not None:
            for name in ("max_new_tokens", *_SAMPLING_OPTIONS):
                value = getattr(config, name, None)
                if value is not None:
                    options.setdefault(name, value)
        if "stop_strings" in options:
            options.setdefault("stop", options.pop("stop_strings"))
        stop = options.pop("stop", ()) or ()
        options["stop"] = (stop,) if isinstance(stop, str) else tuple(stop)
        processors = options.pop("logits_processor", None) or ()
        options["logits_processor"] = tuple(processors)
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(options) - known)
        if unknown:
            raise GenerationOptionsError(
                f"unsupported generation option(s): {', '.join(unknown)}; "
                f"supported: {', '.join(sorted(known | {'generation_config', 'stop_strings'}))}"
            )
        built = cls(**options)
        built._check()
        return built

    def _check(self) -> None:
        if self.max_new_tokens < 1:
            raise GenerationOptionsError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.do_sample and not self.temperature > 0:
            raise GenerationOptionsError(f"temperature must be > 0, got {self.temperature}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise GenerationOptionsError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k is not None and self.top_k < 0:
            raise GenerationOptionsError(f"top_k must be >= 0, got {self.top_k}")
        if self.api_start_top_k < 0:
            raise GenerationOptionsError(f"api_start_top_k must be >= 0, got {self.api_start_top_k}")
        if self.max_calls is not None and self.max_calls < 0:
            raise GenerationOptionsError(f"max_calls must be >= 0, got {self.max_calls}")
        if any(not s for s in self.stop):
            raise GenerationOptionsError("stop strings must not be empty")


def generate(
    prompt: str | Sequence[int],
    *,
    model: Model | None = None,
    tools: Iterable[Any] | ToolRegistry = (),
    **options: Any,
) -> Generation:
    """Generate text from ``prompt``, running the tools the model calls as it writes.

    Options: ``max_new_tokens``, ``do_sample``, ``temperature``, ``top_k``, ``top_p``,
    ``repetition_penalty``, ``seed``, ``stop`` (or ``stop_strings``), ``generation_config``,
    ``logits_processor``; and for calls ``allow_calls``, ``api_start_top_k`` (the paper's rule:
    start a call whenever the start token is among the top k), ``max_calls`` and ``approve``.
    """
    for event in stream(prompt, model=model, tools=tools, **options):
        if isinstance(event, Done):
            return event.generation
    raise AssertionError("stream() ended without a Done event")  # pragma: no cover


def stream(
    prompt: str | Sequence[int],
    *,
    model: Model | None = None,
    tools: Iterable[Any] | ToolRegistry = (),
    **options: Any,
) -> Iterator[Event]:
    """Like ``generate()``, but yield TextDelta, CallStarted, CallFinished and Done as they happen."""
    if model is None:
        from .models import default_model

        model = default_model()
    registry = tools if isinstance(tools, ToolRegistry) else ToolRegistry(tools)
    decoding = DecodingOptions.build(**options)
    return _Run(model, registry, decoding).events(prompt)


class _Detokenizer:
    """Incremental decoding that only releases complete characters.

    It decodes a short window of recent tokens and emits what the newest tokens added, so a
    multi-byte character split over tokens appears once it is whole, and tokenizers that drop a
    leading space on the first token still decode correctly.
    """

    def __init__(self, model: Model) -> None:
        self.model = model
        self.ids: list[int] = []
        self.prefix = 0
        self.read = 0

    def push(self, token: int) -> str:
        self.ids.append(token)
        window = self.ids[self.prefix :]
        before = self.model.decode(self.ids[self.prefix : self.read])
        after = self.model.decode(window)
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


class _Run:
    """The state of one generation."""

    def __init__(self, model: Model, registry: ToolRegistry, options: DecodingOptions) -> None:
        self.model = model
        self.registry = registry
        self.options = options
        self.policy = CallPolicy(max_calls=options.max_calls, approve=options.approve)
        self.processors = _processors(options)
        self.generator: torch.Generator | None = None

    def events(self, prompt: str | Sequence[int]) -> Iterator[Event]:
        opts, model = self.options, self.model
        started = time.perf_counter()
        prompt_ids = (
            model.bos_token_ids + model.encode(prompt) if isinstance(prompt, str) else list(prompt)
        )
        if not prompt_ids:
            raise GenerationOptionsError("the prompt is empty")
        session = model.new_session()
        logits = session.feed(prompt_ids)
        timings = {"prefill": time.perf_counter() - started, "decode": 0.0, "tools": 0.0}
        if opts.seed is not None:
            self.generator = torch.Generator(device=logits.device).manual_seed(opts.seed)

        detok = _Detokenizer(model)
        text = ""
        scan_from = 0  # calls are looked for after the last splice
        calls: list[ToolCall] = []
        generated = spliced = 0
        finish = "length"
        history = list(prompt_ids)
        stops = opts.stop
        longest_stop = max((len(s) for s in stops), default=0)

        while generated < opts.max_new_tokens:
            step = time.perf_counter()
            in_call = _call_is_open(text, scan_from)
            token = self._pick(logits, history, in_call)
            generated += 1
            if token in model.eos_token_ids:
                timings["decode"] += time.perf_counter() - step
                finish = "eos"
                break
            history.append(token)
            settled_before = detok.settled
            delta = detok.push(token)
            before = text
            text += delta

            if stops and delta:
                cut = _find_stop(text, stops, max(0, len(before) - longest_stop))
                if cut is not None:
                    if cut > len(before):
                        yield TextDelta(text[len(before) : cut])
                    text = text[:cut]
                    finish = "stop"
                    timings["decode"] += time.perf_counter() - step
                    break

            pending = None
            if delta and ("→" in delta or ">" in delta):
                pending = find_pending_call(text, scan_from)
            if pending is None:
                if delta:
                    yield TextDelta(delta)
                logits = session.feed([token])
                timings["decode"] += time.perf_counter() - step
                continue

            # A call head is complete. Text the arrow's token wrote past the arrow is dropped
            # (the model rewrites it after the result) when the token can be cleanly removed.
            overshoot = text[pending.end :]
            drop_token = bool(overshoot.strip()) and settled_before and pending.end >= len(before)
            if drop_token:
                head, text = text[len(before) : pending.end], text[: pending.end]
                overshoot = ""
            else:
                head = delta
            if head:
                yield TextDelta(head)
            timings["decode"] += time.perf_counter() - step

            yield CallStarted(pending.name, pending.arguments)
            tool_started = time.perf_counter()
            found = self.registry.get(pending.name)
            outcome = self.registry.call(
                pending.name,
                pending.arguments,
                policy=self.policy,
                context=ToolContext(model=model, tool_name=found.name if found else pending.name),
            )
            limit = found.max_result_chars if found else DEFAULT_MAX_RESULT_CHARS
            result_text = sanitize_result(outcome.text, limit, model.special_tokens)
            timings["tools"] += time.perf_counter() - tool_started

            splice_text = ("" if overshoot.endswith((" ", "\n")) else " ") + result_text + "]"
            splice_ids = model.encode(splice_text)
            fed = splice_ids if drop_token else [token, *splice_ids]
            if drop_token:
                history.pop()
                fed = model.encode(head) + splice_ids
                splice_ids = fed
            splice_started = time.perf_counter()
            logits = session.feed(fed)
            timings["splice"] = timings.get("splice", 0.0) + time.perf_counter() - splice_started
            history.extend(splice_ids)
            detok.splice(drop_token, splice_ids)
            spliced += len(splice_ids)

            text += splice_text
            call = ToolCall(
                name=found.name if found else pending.name,
                arguments_text=pending.arguments,
                arguments=outcome.arguments,
                result=result_text if outcome.error is None else None,
                error=outcome.error,
                latency_s=outcome.latency_s,
                start=pending.start,
                end=len(text),
            )
            calls.append(call)
            yield CallFinished(call)
            yield TextDelta(splice_text)
            scan_from = len(text)

        tail = detok.flush()
        if tail and finish != "stop":
            text += tail
            yield TextDelta(tail)
        timings["total"] = time.perf_counter() - started
        yield Done(
            Generation(
                text=text,
                calls=calls,
                finish_reason=finish,  # type: ignore[arg-type]
                prompt_tokens=len(prompt_ids),
                generated_tokens=generated - (finish == "eos"),
                spliced_tokens=spliced,
                timings=timings,
            )
        )

    def _pick(self, logits: torch.Tensor, history: list[int], in_call: bool) -> int:
        """Choose the next token from raw logits."""
        opts, model = self.options, self.model
        scores = logits.unsqueeze(0).float()
        calls_allowed = opts.allow_calls and not self.policy.exhausted
        if not calls_allowed:
            scores = scores.clone()
            scores[0, _opening_index(model, scores.device)] = float("-inf")
        elif opts.api_start_top_k and not in_call:
            k = min(opts.api_start_top_k, scores.shape[-1])
            if model.call_start_token in torch.topk(scores[0], k).indices.tolist():
                return model.call_start_token
        if self.processors:
            input_ids = torch.tensor([history], device=scores.device)
            for processor in self.processors:
                scores = processor(input_ids, scores)
        if not opts.do_sample:
            return int(torch.argmax(scores[0]))
        probs = torch.softmax(scores[0], dim=-1)
        return int(torch.multinomial(probs, 1, generator=self.generator))


def _processors(options: DecodingOptions) -> list[Callable[..., torch.Tensor]]:
    """transformers' own logits processors for the options given, then the app's."""
    from transformers import (
        RepetitionPenaltyLogitsProcessor,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    processors: list[Callable[..., torch.Tensor]] = []
    if options.repetition_penalty not in (None, 1.0):
        processors.append(RepetitionPenaltyLogitsProcessor(options.repetition_penalty))
    processors.extend(options.logits_processor)
    if options.do_sample:
        if options.temperature != 1.0:
            processors.append(TemperatureLogitsWarper(options.temperature))
        if options.top_k:
            processors.append(TopKLogitsWarper(options.top_k))
        if options.top_p is not None and options.top_p < 1.0:
            processors.append(TopPLogitsWarper(options.top_p))
    return processors


_OPENING_INDEX: dict[tuple[int, str], torch.Tensor] = {}


def _opening_index(model: Model, device: torch.device) -> torch.Tensor:
    key = (id(model), str(device))
    if key not in _OPENING_INDEX:
        _OPENING_INDEX[key] = torch.tensor(model.call_opening_tokens, dtype=torch.long, device=device)
    return _OPENING_INDEX[key]


def _call_is_open(text: str, start: int) -> bool:
    """Is there a "[" after ``start`` that no "]" has closed yet?"""
    opened = text.rfind("[", start)
    return opened >= 0 and "]" not in text[opened:]


def _find_stop(text: str, stops: tuple[str, ...], start: int) -> int | None:
    positions = [p for p in (text.find(s, start) for s in stops) if p >= 0]
    return min(positions) if positions else None
