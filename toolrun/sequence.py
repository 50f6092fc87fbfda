"""One sequence's decoding state: the call protocol, independent of I/O and of the call syntax.

Drivers (``loop.py`` for one sequence, ``batch.py`` for many) only run forward passes and tools.
The state tells them what to do next, as an action:

    action = state.start()                          # Feed(prompt ids)
    while True:
        emit(action.events)                         # TextDelta, CallStarted, CallFinished, Done
        if Feed:      action = state.advance(forward(action.ids))
        if RunCalls:  action = state.resolve([call.run() for call in action.calls])
        if Finished:  break                         # state.result() is the Generation

``advance`` picks a token and looks for a call through the call format; ``resolve`` takes the
tools' outcomes back and says what to splice. The state owns tool lookup, policy, the tool
context, result limits and sanitising, the arrow token that overshoots, and the timings.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from . import templates, tracing
from .backends.base import Model
from .errors import GenerationOptionsError
from .formats import CallFormat, FoundCall, FoundCalls, get_format
from .formats.toolformer import ToolformerFormat, preamble
from .options import DecodingOptions, logits_processors
from .registry import (
    DEFAULT_MAX_RESULT_CHARS,
    CallOutcome,
    CallPolicy,
    Tool,
    ToolContext,
    ToolRegistry,
    aexecute,
    execute,
)
from .results import (
    CallFinished,
    CallStarted,
    ClientCall,
    Done,
    Event,
    FinishReason,
    Generation,
    TextDelta,
    ToolCall,
)
from .syntax import sanitize_result

__all__ = [
    "Action",
    "ChatSetup",
    "Detokenizer",
    "Feed",
    "Finished",
    "PromptOptions",
    "ReadyCall",
    "RunCalls",
    "SequenceState",
]


# What the driver does next


@dataclass
class Feed:
    """Run these ids through the model on top of the cache, then call ``state.advance(logits)``."""

    ids: list[int]
    events: list[Event] = field(default_factory=list)
    phase: str = "decode"  # the timing the forward pass counts toward


@dataclass
class RunCalls:
    """Run every call (in order, or concurrently), then call ``state.resolve(outcomes)``."""

    calls: list[ReadyCall]
    events: list[Event] = field(default_factory=list)


@dataclass
class Finished:
    """The sequence ended; the last event is ``Done`` with ``state.result()``."""

    events: list[Event] = field(default_factory=list)


Action = Feed | RunCalls | Finished


@dataclass
class ReadyCall:
    """One call, looked up, validated and authorised (or refused: ``outcome`` is set already)."""

    id: str
    name: str
    arguments: str | Mapping[str, Any]
    tool: Tool | None
    bound: dict[str, Any] | None
    outcome: CallOutcome | None
    context: ToolContext
    trace: tracing.GenerationTrace = field(default_factory=tracing.GenerationTrace)

    def run(self) -> CallOutcome:
        """Execute from synchronous code, within the tool's deadline. Never raises."""
        with self.trace.tool_call(self.name, self.id, self.bound or self.arguments) as span:
            outcome = self.outcome
            if outcome is None:
                assert self.tool is not None and self.bound is not None
                outcome = execute(self.tool, self.bound, self.context)
            span.record(outcome)
        return outcome

    async def arun(self) -> CallOutcome:
        """Execute on the running event loop (sync tools in a worker thread). Never raises."""
        with self.trace.tool_call(self.name, self.id, self.bound or self.arguments) as span:
            outcome = self.outcome
            if outcome is None:
                assert self.tool is not None and self.bound is not None
                outcome = await aexecute(self.tool, self.bound, self.context)
            span.record(outcome)
        return outcome


@dataclass(frozen=True)
class PromptOptions:
    """The options that shape the prompt and the calls, beside the decoding options.

    ``call_format``: how the model writes calls (``"toolformer"``, ``"hermes"``, ``"llama3"``,
    ``"mistral"``; None or "auto" detects it from the chat template). ``client_tools``: OpenAI
    function schemas of tools the app runs itself (a call to one ends the generation with
    ``finish_reason="tool_calls"``). ``chat_template``: a Jinja template to render messages with,
    instead of the model's. ``describe_tools``: put the tools' descriptions and examples before a
    text prompt (bracket format). ``tool_choice``: ``"auto"``, ``"none"`` (no calls),
    ``"required"`` (the answer opens with a call) or ``{"type": "function", "function":
    {"name": ...}}`` (a call to that tool), as in the OpenAI API. ``parallel_calls``: whether a
    chat turn may hold several calls (OpenAI's ``parallel_tool_calls``); either way, after a
    complete call the model may only end its turn or open another, never write a tool's
    response itself.
    """

    call_format: str | CallFormat | None = None
    client_tools: tuple[Mapping[str, Any], ...] = ()
    chat_template: str | None = None
    describe_tools: bool = False
    tool_choice: str | Mapping[str, Any] | None = None
    parallel_calls: bool = True

    @classmethod
    def pop_from(cls, options: dict[str, Any]) -> PromptOptions:
        """Take this class's keys out of ``options`` (the rest are decoding options)."""
        found = {name: options.pop(name) for name in cls.__dataclass_fields__ if name in options}
        if "client_tools" in found:
            found["client_tools"] = tuple(found["client_tools"] or ())
        return cls(**found)


@dataclass
class ChatSetup:
    """What a chat needs beyond the prompt: the template, the conversation so far, the tools'
    schemas, and which tools only the app has."""

    template: str
    conversation: list[dict[str, Any]]
    schemas: list[dict[str, Any]]
    client_tools: frozenset[str] = frozenset()


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
class _Halt:
    """A turn stopped for calls: what was found and how the splice must begin."""

    found: FoundCalls
    calls: list[ReadyCall]
    client: list[ClientCall]
    token: int  # the token that completed the calls, not yet fed
    drop_token: bool  # it wrote past the halt marker and is re-fed as its head
    head: str  # with drop_token: the text of that token up to the marker
    overshoot: str  # without drop_token: text past the marker that stays


class SequenceState:
    """The decoding state of one sequence: text, calls, token history, counters, timings."""

    def __init__(
        self,
        model: Model,
        registry: ToolRegistry,
        options: DecodingOptions,
        prompt_ids: list[int],
        *,
        call_format: CallFormat | None = None,
        chat: ChatSetup | None = None,
    ) -> None:
        if not prompt_ids:
            raise GenerationOptionsError("the prompt is empty")
        self.model = model
        self.registry = registry
        self.options = options
        self.prompt_ids = list(prompt_ids)
        self.format = call_format or ToolformerFormat()
        self.chat = chat
        self.text = ""
        self.calls: list[ToolCall] = []
        self.client_calls: list[ClientCall] = []
        self.messages: list[dict[str, Any]] = []
        self.generated = 0
        self.spliced = 0
        self.finish: FinishReason | None = None
        self.timings = {"prefill": 0.0, "decode": 0.0, "tools": 0.0, "splice": 0.0}
        self.history = list(prompt_ids)
        self.policy = CallPolicy(max_calls=options.max_calls, approve=options.approve)
        self.processors = logits_processors(options)
        self.generator: torch.Generator | None = None
        self._detok = Detokenizer(model)
        self._turn = 0  # where calls are looked for: after the last splice
        self._message = 0  # where the current assistant message starts (chat formats)
        self._shown = 0  # how much of the text has gone out as TextDelta events
        self._halt: _Halt | None = None
        self._longest_stop = max((len(s) for s in options.stop), default=0)
        self._started = 0.0
        self._clock = 0.0
        self._phase = "prefill"
        self.trace = tracing.start_generation(
            model=model.name,
            backend=model.backend,
            call_format=self.format.name,
            prompt_tokens=len(self.prompt_ids),
            operation="text_completion" if chat is None else "chat",
        )  # here, in the caller's context: a server's request span becomes its parent
        self._no_calls = False  # tool_choice="none"
        self._forced: list[int] = []  # tool_choice="required" or named: the call's opening
        self._parallel = True  # several calls in one chat turn

    @classmethod
    def for_prompt(
        cls,
        model: Model,
        registry: ToolRegistry,
        options: DecodingOptions,
        prompt: str | Sequence[int] | Sequence[Mapping[str, Any]],
        setup: PromptOptions | None = None,
    ) -> SequenceState:
        """A state for a text prompt, token ids, or chat messages (OpenAI-style dicts).

        Messages are rendered with the model's chat template (or ``setup.chat_template``), the
        tools' JSON schemas passed as the template's ``tools`` (see PromptOptions).
        """
        setup = setup or PromptOptions()
        chosen = get_format(setup.call_format, model)
        state = cls._build(model, registry, options, prompt, chosen, setup)
        state._choose_tools(setup.tool_choice)
        state._parallel = setup.parallel_calls
        return state

    @classmethod
    def _build(
        cls,
        model: Model,
        registry: ToolRegistry,
        options: DecodingOptions,
        prompt: str | Sequence[int] | Sequence[Mapping[str, Any]],
        chosen: CallFormat,
        setup: PromptOptions,
    ) -> SequenceState:
        client_tools, chat_template = setup.client_tools, setup.chat_template
        if isinstance(prompt, str) and setup.describe_tools:
            prompt = preamble(registry) + prompt
        if isinstance(prompt, str):
            ids = model.bos_token_ids + model.encode(prompt)
            return cls(model, registry, options, ids, call_format=chosen)
        items = list(prompt)
        if not items or not isinstance(items[0], Mapping):
            if client_tools:
                raise GenerationOptionsError("client_tools need chat messages as the prompt")
            return cls(model, registry, options, [int(i) for i in items], call_format=chosen)  # type: ignore[call-overload]
        messages = [_check_message(m, i) for i, m in enumerate(items)]
        client = [_check_schema(s) for s in client_tools]
        schemas = [t.json_schema() for t in registry] + client
        template = chat_template or templates.template_for(
            model, chosen.name, tools_given=bool(schemas)
        )
        text = templates.render(model, template, messages, tools=schemas or None)
        chat = ChatSetup(
            template=template,
            conversation=messages,
            schemas=schemas,
            client_tools=frozenset(s["function"]["name"].lower() for s in client),
        )
        # The template writes any BOS itself; encode() parses its special-token text.
        ids = model.encode(text)
        return cls(model, registry, options, ids, call_format=chosen, chat=chat)

    def _choose_tools(self, choice: str | Mapping[str, Any] | None) -> None:
        """Apply ``tool_choice``: no calls, or an answer that opens with a call."""
        if choice is None or choice == "auto":
            return
        if choice == "none":
            self._no_calls = True
            return
        name = None
        if isinstance(choice, Mapping):
            function = choice.get("function")
            name = function.get("name") if isinstance(function, Mapping) else None
            known = name is not None and (
                name in self.registry
                or (self.chat is not None and name.lower() in self.chat.client_tools)
            )
            if not known:
                raise GenerationOptionsError(f"tool_choice names no tool given: {choice!r:.200}")
        elif choice != "required":
            raise GenerationOptionsError(
                f"tool_choice must be 'auto', 'none', 'required' or a function, got {choice!r}"
            )
        try:
            opening = self.format.opening(name)
        except NotImplementedError as exc:
            raise GenerationOptionsError(str(exc)) from exc
        self._forced = self.model.encode(opening)

    # the protocol

    @property
    def done(self) -> bool:
        return self.finish is not None

    def start(self) -> Feed:
        """The first action: feed the prompt."""
        self._started = self._clock = time.perf_counter()
        return Feed(list(self.prompt_ids), phase="prefill")

    def advance(self, logits: torch.Tensor) -> Action:
        """Take the next-token logits of what was fed; pick a token and say what comes next."""
        self._charge()
        events: list[Event] = []
        token = self.pick(logits)
        self.generated += 1
        if self.generated == 1:
            self.trace.first_token()
        eos = token in self.model.eos_token_ids
        if eos and self.format.at_end_of_turn and self._calls_allowed:
            found = self.format.find_call(self.text, self._turn)
            if found is not None and found.calls:
                return self._stop_for_calls(found, token, events, drop=False, head="")
        if eos:
            return self._finish("eos", events)

        self.history.append(token)
        settled_before = self._detok.settled
        delta = self._detok.push(token)
        if self.chat is not None and not self.text:
            # A chat reply's text starts at its first word: the space a model trained on plain
            # text writes before it (" [Calculator(") belongs to the prompt's layout.
            delta = delta.lstrip()
        before = len(self.text)
        self.text += delta

        if self.options.stop and delta:
            cut = _find_stop(self.text, self.options.stop, max(0, before - self._longest_stop))
            if cut is not None:
                self.text = self.text[: max(cut, self._shown)]
                return self._finish("stop", events)

        if not self.format.at_end_of_turn and delta and ("→" in delta or ">" in delta):
            found = self.format.find_call(self.text, self._turn)
            if found is not None:
                # Text the arrow's token wrote past the arrow is dropped (the model rewrites it
                # after the result) when the token can be cleanly taken back.
                drop = (
                    bool(self.text[found.end :].strip()) and settled_before and found.end >= before
                )
                head = self.text[before : found.end] if drop else ""
                if drop:
                    self.text = self.text[: found.end]
                return self._stop_for_calls(found, token, events, drop=drop, head=head)

        if self.generated >= self.options.max_new_tokens or self._past_context():
            return self._finish("length", events)
        self._show(events)
        return self._feed([token], events, "decode")

    def resolve(self, outcomes: Sequence[CallOutcome]) -> Action:
        """Take the outcomes of the calls of the last RunCalls, in order; say what to feed."""
        halt = self._halt
        if halt is None or len(outcomes) != len(halt.calls):
            raise RuntimeError("resolve() must answer the calls of the last RunCalls action")
        self._halt = None
        self._charge()
        events: list[Event] = []
        results = []
        for call, outcome in zip(halt.calls, outcomes, strict=True):
            limit = call.tool.max_result_chars if call.tool else DEFAULT_MAX_RESULT_CHARS
            text = sanitize_result(
                outcome.text, limit, self.model.special_tokens, markers=self.format.markers
            )
            results.append(text)
            self.calls.append(
                ToolCall(
                    name=call.tool.name if call.tool else call.name,
                    arguments_text=_arguments_text(call.arguments),
                    arguments=outcome.arguments,
                    result=text if outcome.error is None else None,
                    error=outcome.error,
                    latency_s=outcome.latency_s,
                    start=halt.found.start,
                    end=halt.found.end,
                    id=call.id,
                )
            )

        if self.format.at_end_of_turn:
            # The end of turn the model wrote goes into the cache first, then the template's text.
            splice_text, fed_first = self._chat_splice(halt, results), [halt.token]
            self.history.append(halt.token)
            self._detok.splice(False, [halt.token])
        else:
            splice_text = self.format.result_text(halt.found.calls, results, halt.overshoot) or ""
            fed_first = [] if halt.drop_token else [halt.token]
        splice_ids = self.model.encode(splice_text)
        if halt.drop_token:
            self.history.pop()
            splice_ids = self.model.encode(halt.head) + splice_ids
        self.history.extend(splice_ids)
        self._detok.splice(halt.drop_token, splice_ids)
        self.spliced += len(splice_ids)
        self.text += splice_text
        if not self.format.at_end_of_turn:  # inline: the call ends with its result
            for i in range(len(self.calls) - len(results), len(self.calls)):
                self.calls[i] = replace(self.calls[i], end=len(self.text))
        self._turn = self._shown = len(self.text)
        if self.format.at_end_of_turn:
            self._message = len(self.text)
        events.extend(CallFinished(c) for c in self.calls[-len(results) :] if results)
        if splice_text:
            events.append(TextDelta(splice_text, "result"))

        if halt.client:
            self.client_calls = halt.client
            return self._finish("tool_calls", events)
        if self.generated >= self.options.max_new_tokens or self._past_context():
            return self._finish("length", events)
        return self._feed(fed_first + splice_ids, events, "splice")

    def result(self) -> Generation:
        return Generation(
            text=self.text,
            calls=list(self.calls),
            finish_reason=self.finish or "length",
            prompt_tokens=len(self.prompt_ids),
            generated_tokens=self.generated - (self.finish in ("eos", "tool_calls")),
            spliced_tokens=self.spliced,
            timings=dict(self.timings),
            token_ids=self.history[len(self.prompt_ids) :],
            call_format=self.format.name,
            messages=list(self.messages),
            client_calls=list(self.client_calls),
        )

    # picking a token

    def pick(self, logits: torch.Tensor) -> int:
        """Choose the next token from raw next-token logits (1-D)."""
        opts, model = self.options, self.model
        if self._forced:
            return self._forced.pop(0)
        if opts.do_sample and opts.seed is not None and self.generator is None:
            self.generator = torch.Generator(device=logits.device).manual_seed(opts.seed)
        scores = logits.unsqueeze(0).float()
        inline = isinstance(self.format, ToolformerFormat)
        if not self._calls_allowed:
            scores = scores.clone()
            if inline:
                scores[0, model.call_opening_index(scores.device)] = float("-inf")
            else:
                banned = self.format.opening_tokens(model).to(scores.device)
                scores[0, banned] = float("-inf")
        elif (
            inline and opts.api_start_top_k and not ToolformerFormat.is_open(self.text, self._turn)
        ):
            k = min(opts.api_start_top_k, scores.shape[-1])
            if model.call_start_token in torch.topk(scores[0], k).indices.tolist():
                return model.call_start_token
        # After a complete chat-format call: only the end of the turn or another call.
        guarded = not inline and self._calls_allowed
        tail = self.format.after_calls(self.text, self._turn) if guarded else None
        if tail is not None:
            allowed = self.format.turn_end_tokens(model, tail, self._parallel).to(scores.device)
            kept = scores[0, allowed]
            scores = torch.full_like(scores, float("-inf"))
            scores[0, allowed] = kept
        elif self.generated < opts.min_new_tokens:
            scores = scores.clone()
            scores[0, sorted(model.eos_token_ids)] = float("-inf")
        if self.processors:
            input_ids = torch.tensor([self.history], device=scores.device)
            for processor in self.processors:
                scores = processor(input_ids, scores)
        token = self._choose(scores)
        if not self._calls_allowed and not inline:
            # What no single token opens (Llama 3's "{" that starts a message) is refused here.
            for _ in range(64):
                if not self.format.would_open(self.text, self._turn, model.decode([token])):
                    break
                scores = scores.clone()
                scores[0, token] = float("-inf")
                token = self._choose(scores)
        return token

    def _choose(self, scores: torch.Tensor) -> int:
        if not self.options.do_sample:
            if scores.device.type == "cpu":
                # numpy's argmax: the same first maximum, and ~30x less overhead than torch's
                # on one row (170 vs 6 µs over 49k logits), which showed in tokens/s.
                return int(scores[0].detach().numpy().argmax())
            return int(torch.argmax(scores[0]))
        probs = torch.softmax(scores[0], dim=-1)
        return int(torch.multinomial(probs, 1, generator=self.generator))

    @property
    def _calls_allowed(self) -> bool:
        return self.options.allow_calls and not self._no_calls and not self.policy.exhausted

    # calls

    def _stop_for_calls(
        self, found: FoundCalls, token: int, events: list[Event], *, drop: bool, head: str
    ) -> Action:
        """The calls are complete: look each one up and say to run them."""
        overshoot = "" if drop else self.text[found.end :]
        if self.format.at_end_of_turn:
            self.text += self.model.decode([token])  # the turn's end belongs to the conversation
        self._show(events, through_end=True)
        ready: list[ReadyCall] = []
        client: list[ClientCall] = []
        for call in found.calls:
            call_id = call.id or self._new_id()
            if (
                self.chat is not None
                and call.error is None
                and call.name.lower() in self.chat.client_tools
                and call.name not in self.registry
                and isinstance(call.arguments, Mapping)
            ):
                client.append(ClientCall(call_id, call.name, dict(call.arguments)))
                continue
            ready.append(self._ready(call, call_id))
        for r in ready:
            events.append(CallStarted(r.name, _arguments_text(r.arguments), r.id))
        self._halt = _Halt(found, ready, client, token, drop, head, overshoot)
        if not ready:
            return self.resolve([])
        self._clock = time.perf_counter()
        self._phase = "tools"
        return RunCalls(ready, events)

    def _ready(self, call: FoundCall, call_id: str) -> ReadyCall:
        context = ToolContext(model=self.model, tool_name=call.name)
        trace = self.trace
        if call.error is not None:
            failed = CallOutcome(None, call.error, None, 0.0)
            return ReadyCall(call_id, call.name, call.arguments, None, None, failed, context, trace)
        prepared = self.registry.prepare(call.name, call.arguments, self.policy)
        if isinstance(prepared, CallOutcome):
            tool = self.registry.get(call.name)
            return ReadyCall(
                call_id, call.name, call.arguments, tool, None, prepared, context, trace
            )
        tool, bound = prepared
        context.tool_name = tool.name
        return ReadyCall(call_id, call.name, call.arguments, tool, bound, None, context, trace)

    def _chat_splice(self, halt: _Halt, results: list[str]) -> str:
        """The assistant and tool messages of this turn, and the template's text for them."""
        content = self.text[self._message : halt.found.start].strip()
        written = [(r.id, r.name, r.arguments) for r in halt.calls]
        written += [(c.id, c.name, c.arguments) for c in halt.client]
        assistant = templates.assistant_message(content, written)
        tool_messages = [
            {"role": "tool", "tool_call_id": r.id, "name": r.name, "content": text}
            for r, text in zip(halt.calls, results, strict=True)
        ]
        self.messages += [assistant, *tool_messages]
        if halt.client or self.chat is None:
            return ""  # the app answers first; or text prompts have no template to render with
        text = templates.splice_text(
            self.model,
            self.chat.template,
            self.chat.conversation,
            assistant,
            tool_messages,
            self.model.decode([halt.token]),
            tools=self.chat.schemas or None,
        )
        self.chat.conversation += [assistant, *tool_messages]
        return text

    def _new_id(self) -> str:
        size = getattr(self.format, "id_length", 0)
        if size:
            return uuid.uuid4().hex[:size]
        return f"call_{uuid.uuid4().hex[:24]}"

    # bookkeeping

    def _past_context(self) -> bool:
        """Would feeding the history overflow the model's context? (Spliced results count too,
        so a long run of calls ends here rather than in the backend.)"""
        limit = self.model.context_length
        return limit is not None and len(self.history) >= limit

    def _feed(self, ids: list[int], events: list[Event], phase: str) -> Feed:
        self._clock = time.perf_counter()
        self._phase = phase
        return Feed(ids, events, phase)

    def _charge(self) -> None:
        """Count the time since the last action toward what that action was waiting for."""
        now = time.perf_counter()
        self.timings[self._phase] += now - self._clock
        self._clock = now

    def _show(self, events: list[Event], *, through_end: bool = False) -> None:
        """Emit the text not shown yet as TextDelta events.

        Normally only content, and short of anything that may still become a call's opening or
        a stop string. ``through_end`` (at a call): the content, then the call's markup.
        """
        content_end = self._turn + self.format.content_length(self.text, self._turn)
        end = len(self.text)
        if not through_end:
            end = min(content_end, end - _partial_stop(self.text, self.options.stop))
        cut = min(content_end, end)
        if cut > self._shown:
            events.append(TextDelta(self.text[self._shown : cut]))
            self._shown = cut
        if end > self._shown:
            events.append(TextDelta(self.text[self._shown : end], "call"))
            self._shown = end

    def _finish(self, reason: FinishReason, events: list[Event]) -> Finished:
        self._charge()
        self.finish = reason
        if reason != "tool_calls":
            self.text += self._detok.flush()
            if self.format.at_end_of_turn or self.chat is not None:
                content = self.text[self._message :].strip()
                if content or not self.messages:
                    self.messages.append({"role": "assistant", "content": content})
        if len(self.text) > self._shown:
            events.append(TextDelta(self.text[self._shown :]))
            self._shown = len(self.text)
        self.timings["total"] = time.perf_counter() - self._started
        generation = self.result()
        self.trace.finished(generation)
        events.append(Done(generation))
        return Finished(events)

    def abort(self, exc: BaseException) -> None:
        """The driver gave up on this sequence (an error, a cancellation, a closed stream)."""
        if self.finish is None:
            self.trace.failed(exc)


def _arguments_text(arguments: str | Mapping[str, Any]) -> str:
    if isinstance(arguments, str):
        return arguments
    return json.dumps(dict(arguments), ensure_ascii=False)


def _find_stop(text: str, stops: tuple[str, ...], start: int) -> int | None:
    positions = [p for p in (text.find(s, start) for s in stops) if p >= 0]
    return min(positions) if positions else None


def _partial_stop(text: str, stops: tuple[str, ...]) -> int:
    """Length of the longest end of ``text`` that could still grow into a stop string."""
    longest = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:size]):
                longest = size
                break
    return longest


_ROLES = {"system", "developer", "user", "assistant", "tool", "ipython"}


def _check_message(message: Any, index: int) -> dict[str, Any]:
    if not isinstance(message, Mapping):
        raise GenerationOptionsError(
            f"message {index} must be a dict, got {type(message).__name__}"
        )
    role = message.get("role")
    if role not in _ROLES:
        raise GenerationOptionsError(
            f"message {index} has role {role!r}; expected one of {', '.join(sorted(_ROLES))}"
        )
    content = message.get("content")
    if content is not None and not isinstance(content, (str, list)):
        raise GenerationOptionsError(f"message {index}: content must be text or a list of parts")
    if isinstance(content, list):  # OpenAI content parts: keep the text ones
        texts = [
            p.get("text", "") for p in content if isinstance(p, Mapping) and p.get("type") == "text"
        ]
        message = {**message, "content": "".join(texts)}
    return dict(message)


def _check_schema(schema: Any) -> dict[str, Any]:
    """An OpenAI function schema: ``{"type": "function", "function": {"name", ...}}``."""
    function = schema.get("function") if isinstance(schema, Mapping) else None
    name = function.get("name") if isinstance(function, Mapping) else None
    if not isinstance(name, str) or not name:
        raise GenerationOptionsError(
            'a client tool must be {"type": "function", "function": {"name": ..., '
            f'"parameters": {{...}}}}, got {schema!r:.200}'
        )
    return {"type": "function", "function": dict(function)}  # type: ignore[arg-type]
