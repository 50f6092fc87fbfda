"""``POST /v1/chat/completions``: a conversation answered, server-side tools run mid-generation.

Two kinds of tools. The server's own (registered at start) run while the model writes, on the
same cache, and the model reads their results in the same generation; each one that ran is
listed in the message's ``server_tool_calls`` (an extension field: ``id``, ``function.name``,
``function.arguments``, ``result`` or ``error``, ``latency_s``). Tools that only the request
names (``tools``) are the client's: a call to one ends the generation with
``finish_reason="tool_calls"`` and the standard ``message.tool_calls``; the client runs them,
appends the assistant message and one ``tool`` message per call, and sends the conversation
again. Server calls made before that are put back into the conversation the client returns
(``turns.TurnMemory``), so the model reads what it wrote.

``content`` is what the model says: for chat call formats (hermes, llama3, mistral) the call
markup and the rendered tool turns stay out of it; for the bracket format the calls and their
results are part of the text, as ``toolrun.generate()`` returns it.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncGenerator
from typing import Any

from ..registry import ToolRegistry
from ..results import CallFinished, ClientCall, Done, Generation, TextDelta
from ..sequence import PromptOptions, SequenceState
from .completions import FINISH_REASONS as TEXT_FINISH_REASONS
from .completions import decoding_options, new_id, server_call, usage
from .engine import Engine
from .errors import APIError
from .protocol import ChatCompletionRequest, NamedToolChoice, message_dict

__all__ = ["ChatReply", "chat_chunks", "chat_completion", "chat_state"]

FINISH_REASONS = {**TEXT_FINISH_REASONS, "tool_calls": "tool_calls"}
ARGUMENT_FRAGMENT = 32
"""Characters of a client call's arguments per streamed chunk."""


def chat_state(engine: Engine, body: ChatCompletionRequest) -> SequenceState:
    """The request as a sequence for the runtime; every 4xx is raised here, before streaming."""
    model, settings = engine.model, engine.settings
    registry = engine.registry
    requested = body.tools or []
    # A server tool that needs approval the server cannot give goes to the client when the
    # request lists it (the client runs it); otherwise it is refused in-band, never run.
    handed_back = {
        t.function.name.lower() for t in requested if t.function.name.lower() in engine.unapproved
    }
    if handed_back:
        registry = ToolRegistry([t for t in registry if t.name.lower() not in handed_back])
    client_tools = [
        _schema(t.model_dump(exclude_none=True))
        for t in requested
        if t.function.name not in registry
    ]

    choice = body.tool_choice
    known = {t.function.name for t in requested} | set(registry.names)
    if isinstance(choice, NamedToolChoice) and choice.function.name not in known:
        raise APIError(
            400,
            f"tool_choice names {choice.function.name!r}, which is neither in tools nor on the "
            "server",
            param="tool_choice",
            code="invalid_value",
        )
    if choice == "required" and not known:
        raise APIError(400, 'tool_choice "required" needs tools', param="tool_choice")

    options = decoding_options(engine, body, settings.max_tokens)
    messages = engine.turns.restore([message_dict(m) for m in body.messages])
    prompt = PromptOptions(
        call_format=settings.call_format,
        client_tools=tuple(client_tools),
        chat_template=engine.chat_template,
        tool_choice=choice.model_dump() if isinstance(choice, NamedToolChoice) else choice,
        parallel_calls=body.parallel_tool_calls,
    )
    state = SequenceState.for_prompt(model, registry, options, messages, prompt)
    # The options object is this request's own: the budget can only be known once the
    # conversation is rendered and counted.
    field = "max_completion_tokens" if body.max_completion_tokens else "max_tokens"
    options.max_new_tokens = engine.token_budget(len(state.prompt_ids), body.token_limit, field)
    return state


class ChatReply:
    """What the client sees of a sequence's events: content, server calls, client calls."""

    def __init__(self, state: SequenceState, parallel_tool_calls: bool) -> None:
        self.inline = not state.format.at_end_of_turn  # bracket calls live in the text
        self.parallel = parallel_tool_calls
        self.content = ""
        self.after_call = False
        self.first_text: float | None = None

    def content_of(self, event: TextDelta) -> str:
        """The part of a text delta that is content (possibly empty)."""
        if not event.text or not (
            event.channel == "content" or (self.inline and event.channel == "result")
        ):
            return ""
        piece = event.text
        if self.after_call and not self.inline:  # a new turn after tool results
            if self.content and not self.content.endswith(("\n", " ")):
                piece = "\n\n" + piece.lstrip()
            self.after_call = False
        self.content += piece
        if self.first_text is None:
            self.first_text = time.perf_counter()
        return piece

    def client_calls(self, generation: Generation) -> list[ClientCall]:
        calls = generation.client_calls
        return calls if self.parallel else calls[:1]


async def chat_completion(
    engine: Engine, state: SequenceState, body: ChatCompletionRequest, started: float
) -> dict[str, Any]:
    reply = ChatReply(state, body.parallel_tool_calls)
    generation: Generation | None = None
    async for event in engine.events(state):
        if isinstance(event, TextDelta):
            reply.content_of(event)
        elif isinstance(event, CallFinished):
            reply.after_call = True
        elif isinstance(event, Done):
            generation = event.generation
    assert generation is not None
    client_calls = reply.client_calls(generation)
    _record(engine, generation, client_calls, started, reply.first_text)
    message: dict[str, Any] = {
        "role": "assistant",
        "content": reply.content if reply.content or not client_calls else None,
        "refusal": None,
        "server_tool_calls": [server_call(c) for c in generation.calls],
    }
    if client_calls:
        message["tool_calls"] = [_tool_call(c) for c in client_calls]
    return {
        "id": new_id("chatcmpl"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": engine.model_id,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": FINISH_REASONS[generation.finish_reason],
            }
        ],
        "usage": usage(generation),
    }


async def chat_chunks(
    engine: Engine, state: SequenceState, body: ChatCompletionRequest, started: float
) -> AsyncGenerator[dict[str, Any], None]:
    """The streamed form, as the openai SDK reads it: role first, content deltas, server calls
    as they finish, client calls (id and name, then argument fragments), then the finish."""
    reply = ChatReply(state, body.parallel_tool_calls)
    head = {
        "id": new_id("chatcmpl"),
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": engine.model_id,
    }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {**head, "choices": [choice]}

    yield chunk({"role": "assistant", "content": ""})
    async for event in engine.events(state):
        if isinstance(event, TextDelta):
            piece = reply.content_of(event)
            if piece:
                yield chunk({"content": piece})
        elif isinstance(event, CallFinished):
            reply.after_call = True
            yield chunk({"server_tool_calls": [server_call(event.call)]})
        elif isinstance(event, Done):
            generation = event.generation
            client_calls = reply.client_calls(generation)
            for index, call in enumerate(client_calls):
                whole = _tool_call(call)
                opening = {**whole, "function": {"name": call.name, "arguments": ""}}
                yield chunk({"tool_calls": [{"index": index, **opening}]})
                arguments = whole["function"]["arguments"]
                for at in range(0, len(arguments), ARGUMENT_FRAGMENT):
                    fragment = arguments[at : at + ARGUMENT_FRAGMENT]
                    yield chunk(
                        {"tool_calls": [{"index": index, "function": {"arguments": fragment}}]}
                    )
            _record(engine, generation, client_calls, started, reply.first_text)
            yield chunk({}, FINISH_REASONS[generation.finish_reason])
            if body.stream_options is not None and body.stream_options.include_usage:
                yield {**head, "choices": [], "usage": usage(generation)}


def _tool_call(call: ClientCall) -> dict[str, Any]:
    return {
        "id": call.id,
        "type": "function",
        "function": {
            "name": call.name,
            "arguments": json.dumps(call.arguments, ensure_ascii=False),
        },
    }


def _schema(spec: dict[str, Any]) -> dict[str, Any]:
    """A request's tool as the template reads it (an omitted parameters is an empty object)."""
    function = dict(spec["function"])
    function.setdefault("parameters", {"type": "object", "properties": {}})
    function.pop("strict", None)
    return {"type": "function", "function": function}


def _record(
    engine: Engine,
    generation: Generation,
    client_calls: list[ClientCall],
    started: float,
    first_text: float | None,
) -> None:
    engine.record(generation, started, first_text)
    engine.turns.remember(generation, client_calls)
    for call in client_calls:
        engine.metrics.tool_call(call.name, "client")
