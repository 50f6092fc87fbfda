"""The decoding loop: decode, watch for a call, run it at the arrow, splice the result, resume.

One step, top to bottom (the per-sequence bookkeeping lives in ``sequence.py``):

1. pick a token from the logits: calls banned when disabled or over the cap, the paper's rule
   forcing the call-start token when it is in the top k, transformers' logits processors, then
   greedy or sampled;
2. decode it incrementally and look for a finished call head ``[Name(args) →`` in the text;
3. no call: feed the token and continue;
4. a call: run it through the registry, then feed the token and " result]" together on top of
   the existing cache. The context is never re-encoded.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from .backends.base import Model
from .options import DecodingOptions
from .registry import ToolRegistry
from .results import CallFinished, CallStarted, Done, Event, Generation, TextDelta
from .sequence import SequenceState

__all__ = ["generate", "stream"]


def generate(
    prompt: str | Sequence[int],
    *,
    model: Model | None = None,
    tools: Iterable[Any] | ToolRegistry = (),
    **options: Any,
) -> Generation:
    """Generate text from ``prompt``, running the tools the model calls as it writes.

    ``tools``: names of installed tools (``"calculator"``), functions (decorated or not), Tool
    objects, or a ToolRegistry. ``model``: from ``load_model()``; the default model if None.

    Options: ``max_new_tokens`` (counts the model's own tokens, not spliced results),
    ``do_sample``, ``temperature``, ``top_k``, ``top_p``, ``repetition_penalty``, ``seed``,
    ``stop`` (or ``stop_strings``), ``generation_config``, ``logits_processor``; for calls:
    ``allow_calls`` (False bans every token that can open one), ``api_start_top_k`` (the paper's
    rule: open a call whenever "[" is among the top k tokens), ``max_calls`` and ``approve``
    (``approve(name, arguments) -> bool`` for tools marked ``requires_approval``).
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
    """Like ``generate()``, but yield TextDelta, CallStarted, CallFinished and Done as they happen.

    Joining the TextDelta texts gives ``Generation.text``.
    """
    if model is None:
        from .models import default_model

        model = default_model()
    registry = tools if isinstance(tools, ToolRegistry) else ToolRegistry(tools)
    state = SequenceState.for_prompt(model, registry, DecodingOptions.build(**options), prompt)
    return _decode(state)


def _decode(state: SequenceState) -> Iterator[Event]:
    started = time.perf_counter()
    session = state.model.new_session()
    logits = session.feed(state.prompt_ids)
    timings = state.timings
    timings["prefill"] = time.perf_counter() - started

    while True:
        tick = time.perf_counter()
        step = state.accept(state.pick(logits))
        if step.delta:
            yield TextDelta(step.delta)
        if step.kind == "done":
            timings["decode"] += time.perf_counter() - tick
            break
        if step.kind == "text":
            logits = session.feed([state.history[-1]])
            timings["decode"] += time.perf_counter() - tick
            continue

        # The arrow arrived: run the call, then feed the token and " result]" in one pass.
        assert step.call is not None
        timings["decode"] += time.perf_counter() - tick
        yield CallStarted(step.call.name, step.call.arguments)
        tick = time.perf_counter()
        outcome = state.registry.call(
            step.call.name,
            step.call.arguments,
            policy=state.policy,
            context=state.call_context(step.call),
        )
        timings["tools"] += time.perf_counter() - tick
        fed, spliced_text = state.splice(step.call, outcome)
        yield CallFinished(state.calls[-1])
        yield TextDelta(spliced_text)
        tick = time.perf_counter()
        logits = session.feed(fed)
        timings["splice"] += time.perf_counter() - tick
        end = state.after_splice()
        if end is not None:
            if end.delta:
                yield TextDelta(end.delta)
            break

    session.close()
    timings["total"] = time.perf_counter() - started
    yield Done(state.result())
