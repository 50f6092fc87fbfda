"""``POST /v1/completions``: a prompt string continued, server-side tools run as it writes.

The text returned is what the model wrote with the results spliced in, exactly as
``toolrun.generate()`` returns it; each call that ran is also listed in the choice's
``server_tool_calls`` (an extension field: ``id``, ``function.name``, ``function.arguments``,
``result`` or ``error``, ``latency_s``, and ``span``, the call's place in the text).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncGenerator
from typing import Any

from ..options import DecodingOptions
from ..results import CallFinished, Done, Generation, TextDelta, ToolCall
from ..sequence import PromptOptions, SequenceState
from .engine import Engine
from .protocol import CompletionRequest, _Sampling

__all__ = ["complete", "completion_chunks", "completion_state", "decoding_options", "usage"]

FINISH_REASONS = {"eos": "stop", "stop": "stop", "length": "length"}


def decoding_options(engine: Engine, body: _Sampling, budget: int) -> DecodingOptions:
    """The request's sampling fields as toolrun's options; no temperature means the default.

    The server's ``decoding`` defaults lie beneath.
    """
    temperature = body.temperature
    if temperature is None:
        temperature = engine.settings.default_temperature
    options: dict[str, Any] = {
        **engine.settings.decoding,
        "max_new_tokens": budget,
        "stop": body.stop or engine.settings.decoding.get("stop", ()),
        "seed": body.seed,
        "approve": engine.settings.approve,
    }
    if temperature > 0:
        options.update(do_sample=True, temperature=temperature, top_p=body.top_p)
    return DecodingOptions.build(**options)


def completion_state(engine: Engine, body: CompletionRequest) -> SequenceState:
    model = engine.model
    assert isinstance(body.prompt, str)  # the validator made one string of it
    prompt_ids = model.bos_token_ids + model.encode(body.prompt)
    budget = engine.token_budget(len(prompt_ids), body.max_tokens)
    options = decoding_options(engine, body, budget)
    prompt = PromptOptions(call_format=engine.settings.call_format)
    return SequenceState.for_prompt(model, engine.registry, options, prompt_ids, prompt)


async def complete(engine: Engine, state: SequenceState, started: float) -> dict[str, Any]:
    first_text = None
    generation: Generation | None = None
    async for event in engine.events(state):
        if isinstance(event, TextDelta) and event.text and first_text is None:
            first_text = time.perf_counter()
        elif isinstance(event, Done):
            generation = event.generation
    assert generation is not None
    engine.record(generation, started, first_text)
    choice = {
        "index": 0,
        "text": generation.text,
        "logprobs": None,
        "finish_reason": FINISH_REASONS[generation.finish_reason],
        "server_tool_calls": [server_call(c) for c in generation.calls],
    }
    return {
        "id": new_id("cmpl"),
        "object": "text_completion",
        "created": int(time.time()),
        "model": engine.model_id,
        "choices": [choice],
        "usage": usage(generation),
    }


async def completion_chunks(
    engine: Engine, state: SequenceState, body: CompletionRequest, started: float
) -> AsyncGenerator[dict[str, Any], None]:
    """The streamed form: one chunk per text delta or server call, then the finish."""
    head = {
        "id": new_id("cmpl"),
        "object": "text_completion",
        "created": int(time.time()),
        "model": engine.model_id,
    }

    def chunk(text: str, finish: str | None = None, **extra: Any) -> dict[str, Any]:
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish, **extra}
        return {**head, "choices": [choice]}

    first_text = None
    async for event in engine.events(state):
        if isinstance(event, TextDelta) and event.text:
            first_text = first_text or time.perf_counter()
            yield chunk(event.text)
        elif isinstance(event, CallFinished):
            yield chunk("", server_tool_calls=[server_call(event.call)])
        elif isinstance(event, Done):
            generation = event.generation
            engine.record(generation, started, first_text)
            yield chunk("", FINISH_REASONS[generation.finish_reason])
            if body.stream_options is not None and body.stream_options.include_usage:
                yield {**head, "choices": [], "usage": usage(generation)}


def server_call(call: ToolCall) -> dict[str, Any]:
    """A call that ran on the server, in the shape of an OpenAI tool call plus its outcome."""
    arguments = (
        json.dumps(call.arguments, ensure_ascii=False)
        if call.arguments is not None
        else call.arguments_text
    )
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": arguments},
        "result": call.result,
        "error": call.error,
        "latency_s": round(call.latency_s, 6),
        "span": [call.start, call.end],
    }


def usage(generation: Generation) -> dict[str, int]:
    """Token counts; ``completion_tokens`` are the model's own, ``spliced_tokens`` the results."""
    return {
        "prompt_tokens": generation.prompt_tokens,
        "completion_tokens": generation.generated_tokens,
        "total_tokens": (
            generation.prompt_tokens + generation.generated_tokens + generation.spliced_tokens
        ),
        "spliced_tokens": generation.spliced_tokens,
    }


def new_id(prefix: str) -> str:
    """``cmpl-...`` / ``chatcmpl-...``, as OpenAI spells response ids."""
    return f"{prefix}-{uuid.uuid4().hex[:24]}"
