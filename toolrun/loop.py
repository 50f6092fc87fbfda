"""The single-sequence driver: ``generate()``, ``stream()`` and ``chat()``.

The call protocol lives in ``sequence.py``; this loop only runs what the state asks for:

1. feed the prompt, and from then on whatever ``Feed`` action the state returns, on top of the
   existing cache (the context is never re-encoded);
2. the state picks a token from the logits and looks for a call in the decoded text;
3. when a call is complete (at the arrow, or at the end of a chat turn), run it; the state
   sanitises the result and says what to splice;
4. repeat until the state says it is finished.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from .backends.base import Model
from .models import resolve_model
from .options import DecodingOptions, check_prompt
from .registry import ToolRegistry
from .results import Done, Event, Generation
from .sequence import Action, Feed, PromptOptions, RunCalls, SequenceState

__all__ = ["chat", "generate", "stream"]

Prompt = str | Sequence[int] | Sequence[Mapping[str, Any]]
"""Text, token ids, or chat messages (OpenAI-style dicts, rendered with the chat template)."""


def generate(
    prompt: Prompt,
    *,
    model: Model | str | os.PathLike[str] | None = None,
    tools: Iterable[Any] | ToolRegistry | str = (),
    **options: Any,
) -> Generation:
    """Generate from ``prompt``, running the tools the model calls as it writes.

    ``prompt``: text, token ids, or a list of chat messages (see ``chat()``). ``tools``: names of
    installed tools (``"calculator"``), ``module:function`` references, functions (decorated or
    not), Tool objects, or a ToolRegistry. ``model``: from ``load_model()``, a name or path to
    load, or None for the default model.

    Calls: ``call_format`` (``"toolformer"``, ``"hermes"``, ``"llama3"``, ``"mistral"``; by
    default read from the model's chat template; ``Generation.call_format`` says which ran),
    ``client_tools``, ``chat_template``, ``describe_tools``, ``tool_choice`` (see
    ``toolrun.sequence.PromptOptions``), ``allow_calls`` (False keeps the model from opening
    one), ``api_start_top_k`` (the paper's rule: open a call whenever "[" is among the top k
    tokens), ``max_calls`` and ``approve`` (``approve(name, arguments) -> bool`` for tools marked
    ``requires_approval``).

    Decoding: ``max_new_tokens`` (counts the model's own tokens, not spliced results),
    ``do_sample``, ``temperature``, ``top_k``, ``top_p``, ``repetition_penalty``, ``seed``,
    ``stop`` (or ``stop_strings``), ``generation_config``, ``logits_processor``.
    """
    for event in stream(prompt, model=model, tools=tools, **options):
        if isinstance(event, Done):
            return event.generation
    raise AssertionError("stream() ended without a Done event")  # pragma: no cover


def chat(
    messages: Sequence[Mapping[str, Any]],
    *,
    model: Model | str | os.PathLike[str] | None = None,
    tools: Iterable[Any] | ToolRegistry | str = (),
    **options: Any,
) -> Generation:
    """Answer a conversation of OpenAI-style messages, running the tools the model calls.

    The messages are rendered with the model's own chat template, the tools' JSON schemas passed
    as its ``tools`` (a ChatML template without tool support gets toolrun's documented Hermes
    block). Calls run mid-generation in the model's own format; what is spliced after them is what
    the template renders for the tool messages. ``Generation.messages`` holds the new assistant
    and tool messages, ready to append to ``messages``. ``client_tools``: OpenAI function schemas
    of tools the app runs itself: a call to one ends the generation with
    ``finish_reason="tool_calls"`` and ``Generation.client_calls``. Options as ``generate()``.
    """
    if isinstance(messages, str) or not all(isinstance(m, Mapping) for m in messages):
        from .errors import GenerationOptionsError

        raise GenerationOptionsError("chat() takes a list of message dicts; generate() takes text")
    return generate(messages, model=model, tools=tools, **options)


def stream(
    prompt: Prompt,
    *,
    model: Model | str | os.PathLike[str] | None = None,
    tools: Iterable[Any] | ToolRegistry | str = (),
    **options: Any,
) -> Iterator[Event]:
    """Like ``generate()``, but yield TextDelta, CallStarted, CallFinished and Done as they happen.

    Joining the TextDelta texts gives ``Generation.text``. Everything is checked before the first
    event: bad options raise here, not from the iterator.
    """
    return _drive(new_state(prompt, model=model, tools=tools, options=options))


def new_state(
    prompt: Prompt,
    *,
    model: Model | str | os.PathLike[str] | None,
    tools: Iterable[Any] | ToolRegistry | str,
    options: dict[str, Any],
) -> SequenceState:
    """A validated sequence state for any driver (options first: no model loads for a typo)."""
    check_prompt(prompt)
    options = dict(options)
    setup = PromptOptions.pop_from(options)
    decoding = DecodingOptions.build(**options)
    registry = tools if isinstance(tools, ToolRegistry) else ToolRegistry(tools)
    return SequenceState.for_prompt(resolve_model(model), registry, decoding, prompt, setup)


def _drive(state: SequenceState) -> Iterator[Event]:
    session = state.model.new_session()
    try:
        action: Action = state.start()
        while True:
            yield from action.events
            if isinstance(action, Feed):
                action = state.advance(session.feed(action.ids))
            elif isinstance(action, RunCalls):
                action = state.resolve([call.run() for call in action.calls])
            else:
                return
    except BaseException as exc:  # an app's processor failed, or the caller left the stream
        state.abort(exc)
        raise
    finally:
        session.close()
