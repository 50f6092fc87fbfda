"""Batched decoding: many sequences decode together, and each one calls its own tools.

``generate_batch(prompts)``, ``await agenerate(prompt)`` and ``astream(prompt)`` hand sequences
to a ``Runtime``, a scheduler task on the event loop (one per model and loop for ``agenerate``
and ``astream``). It drives each ``SequenceState`` exactly as ``loop.py`` drives one, so results
and events are the same as ``toolrun.generate()``/``stream()``. One turn of it:

1. drop the sequences that finished or were cancelled, and admit waiting ones up to max_batch;
2. run one forward pass, in a worker thread so that tools keep running on the loop, for every
   sequence with tokens to feed: a new prompt, its last token, or a tool result to splice;
3. hand each fed sequence its logits (``state.advance``): it says feed a token next turn, run
   calls (they start on the loop, async tools there and sync ones in threads, and the sequence
   pauses while the others go on), or finished;
4. when a sequence's calls return, ``state.resolve`` says what to splice; it is fed from the
   next turn on (a long one SPLICE_CHUNK tokens per pass).

The forward pass comes from the model: ``model.new_batch()`` when a backend provides one (the
transformers backend's shared cache with per-row positions, llama.cpp's multi-sequence context),
or, for any other model, one session per sequence fed in turn (no batching, but tools still run
concurrently).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import itertools
import os
import weakref
from collections import deque
from collections.abc import (
    AsyncIterator,
    Callable,
    Coroutine,
    Hashable,
    Iterable,
    Mapping,
    Sequence,
)
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import torch

from .backends.base import Model, Session
from .errors import GenerationOptionsError
from .loop import Prompt
from .models import resolve_model
from .options import DecodingOptions, check_prompt
from .registry import ToolRegistry
from .results import Done, Event, Generation
from .sequence import Action, Feed, PromptOptions, ReadyCall, RunCalls, SequenceState

__all__ = [
    "DEFAULT_MAX_BATCH",
    "Batch",
    "Runtime",
    "SessionBatch",
    "agenerate",
    "astream",
    "generate_batch",
]

DEFAULT_MAX_BATCH = 64
"""Sequences decoded together by one runtime; more requests wait for a free row."""

SPLICE_CHUNK = 16
"""A tool result longer than this is fed over several passes, so that one long result does not
widen every row's pass (the other rows would each get that many holes to compute)."""

T = TypeVar("T")


class Batch(Protocol):
    """What a runtime needs from a backend: one forward pass over many sequences."""

    def step(self, feeds: Mapping[Hashable, Sequence[int]]) -> Mapping[Hashable, torch.Tensor]:
        """Append ids to each keyed sequence (a new key starts one); return next-token logits."""

    def remove(self, keys: Sequence[Hashable]) -> None:
        """Forget these sequences and their caches."""

    def close(self) -> None:
        """Forget every sequence."""


class SessionBatch:
    """The fallback for models without a batched pass: one session per sequence, fed in turn."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self.sessions: dict[Hashable, Session] = {}

    def step(self, feeds: Mapping[Hashable, Sequence[int]]) -> dict[Hashable, torch.Tensor]:
        logits = {}
        for key, ids in feeds.items():
            session = self.sessions.get(key)
            if session is None:
                session = self.sessions[key] = self.model.new_session()
            logits[key] = session.feed(ids)
        return logits

    def remove(self, keys: Sequence[Hashable]) -> None:
        for key in keys:
            session = self.sessions.pop(key, None)
            if session is not None:
                session.close()

    def close(self) -> None:
        self.remove(list(self.sessions))


def open_batch(model: Model) -> Batch:
    """The best batched forward pass this model offers: its own, or one session per row."""
    hook = getattr(model, "new_batch", None)
    if callable(hook):
        batch: Batch = hook()
        return batch
    return SessionBatch(model)


@dataclass(eq=False)
class _Request:
    key: int
    state: SequenceState
    future: asyncio.Future[Generation]
    events: asyncio.Queue[Event | _Failure] | None = None  # for streaming requests
    feed: list[int] | None = None
    phase: str = "prefill"  # the kind of the pending feed: a long splice is fed in chunks
    tool: asyncio.Task[None] | None = None
    joined: bool = False


@dataclass(frozen=True)
class _Failure:
    error: BaseException


class Runtime:
    """Gathers the sequences of one model into batches on the running event loop."""

    def __init__(
        self,
        model: Model,
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        batch_factory: Callable[[Model], Batch] | None = None,
    ) -> None:
        self.model = model
        self.max_batch = _check_max_batch(max_batch)
        self.batch_factory = batch_factory or open_batch
        """Makes the forward pass for a run of the scheduler (a server wraps it to reuse KV)."""
        self.waiting: deque[_Request] = deque()
        self.active: dict[int, _Request] = {}
        self.steps = 0  # forward passes run, for tests and benchmarks
        self._keys = itertools.count()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None

    async def submit(self, state: SequenceState) -> Generation:
        """Decode one sequence with the others; cancelling the caller drops only this one."""
        return await self._enqueue(state, streaming=False).future

    async def stream(self, state: SequenceState) -> AsyncIterator[Event]:
        """Decode one sequence with the others, yielding its events as ``toolrun.stream()`` does.

        Leaving the iteration early (or cancelling the consumer) drops only this sequence.
        """
        request = self._enqueue(state, streaming=True)
        assert request.events is not None
        try:
            while True:
                event = await request.events.get()
                if isinstance(event, _Failure):
                    raise event.error
                yield event
                if isinstance(event, Done):
                    return
        finally:
            if not request.future.done():
                request.future.cancel()

    def _enqueue(self, state: SequenceState, *, streaming: bool) -> _Request:
        loop = asyncio.get_running_loop()
        request = _Request(next(self._keys), state, loop.create_future())
        if streaming:
            request.events = asyncio.Queue()
        request.future.add_done_callback(lambda _: self._wake.set())
        self.waiting.append(request)
        self._wake.set()
        if self._task is None:
            self._task = loop.create_task(self._run(), name=f"toolrun-batch {self.model.name}")
        return request

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        backend = self.batch_factory(self.model)
        # One thread for forward passes: the loop stays free for tools and new requests.
        worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="toolrun-batch")
        try:
            while self.waiting or self.active:
                self._wake.clear()
                self._sweep(backend)
                self._admit()
                fed = [r for r in self.active.values() if r.feed is not None]
                if not fed:
                    if self.waiting or self.active:
                        await self._wake.wait()
                    continue
                feeds: dict[Hashable, Sequence[int]] = {}
                for r in fed:
                    feeds[r.key] = self._take(r)
                    r.joined = True
                logits = await loop.run_in_executor(worker, backend.step, feeds)
                self.steps += 1
                for r in fed:
                    if r.feed is None and not r.future.done():  # a split result is fully fed
                        self._advance(r, logits[r.key])
        except Exception as exc:  # a failed forward pass fails every sequence in the batch
            for r in [*self.active.values(), *self.waiting]:
                self._fail(r, exc)
        except BaseException as exc:  # the scheduler itself was cancelled (the loop is closing)
            for r in [*self.active.values(), *self.waiting]:
                r.state.abort(exc)
                r.future.cancel()
            raise
        finally:
            for r in self.active.values():
                if r.tool is not None:
                    r.tool.cancel()
            self.active.clear()
            self.waiting.clear()
            self._task = None
            backend.close()
            worker.shutdown(wait=False)

    def _sweep(self, backend: Batch) -> None:
        """Take finished and cancelled sequences out of the batch (never during a pass)."""
        gone = [r for r in self.active.values() if r.future.done()]
        for r in gone:
            del self.active[r.key]
            if r.tool is not None:
                r.tool.cancel()
            if r.future.cancelled():
                r.state.abort(asyncio.CancelledError())
        backend.remove([r.key for r in gone if r.joined])

    def _take(self, request: _Request) -> list[int]:
        """This pass's tokens: all of them, but a long result only SPLICE_CHUNK at a time."""
        assert request.feed is not None
        size = SPLICE_CHUNK if request.phase == "splice" else len(request.feed)
        taken, rest = request.feed[:size], request.feed[size:]
        request.feed = rest or None
        return taken

    def _admit(self) -> None:
        while self.waiting and len(self.active) < self.max_batch:
            request = self.waiting.popleft()
            if request.future.done():
                if request.future.cancelled():
                    request.state.abort(asyncio.CancelledError())
                continue
            self.active[request.key] = request
            self._apply(request, request.state.start())

    def _advance(self, request: _Request, logits: torch.Tensor) -> None:
        """One token for one sequence: the state decides, exactly as under ``generate()``."""
        try:
            action = request.state.advance(logits)
        except Exception as exc:  # an app's logits processor or approver failed
            self._fail(request, exc)
            return
        self._apply(request, action)

    def _apply(self, request: _Request, action: Action) -> None:
        """Do what the state asked: feed next pass, start the calls, or hand back the result."""
        if request.events is not None:
            for event in action.events:
                request.events.put_nowait(event)
        if isinstance(action, Feed):
            request.feed, request.phase = action.ids, action.phase
        elif isinstance(action, RunCalls):
            request.tool = asyncio.ensure_future(self._run_calls(request, action.calls))
        elif not request.future.done():
            request.future.set_result(request.state.result())

    async def _run_calls(self, request: _Request, calls: list[ReadyCall]) -> None:
        """Run one turn's calls concurrently while the batch goes on; then splice."""
        try:
            outcomes = await asyncio.gather(*(call.arun() for call in calls))
            action = request.state.resolve(outcomes)
        except Exception as exc:
            self._fail(request, exc)
            return
        finally:
            request.tool = None
        self._apply(request, action)
        self._wake.set()

    def _fail(self, request: _Request, exc: BaseException) -> None:
        if request.future.done():
            return
        request.state.abort(exc)
        request.future.set_exception(exc)
        if request.events is not None:
            request.future.exception()  # the stream's consumer reads it from the queue
            request.events.put_nowait(_Failure(exc))


def generate_batch(
    prompts: Iterable[Prompt],
    *,
    model: Model | str | os.PathLike[str] | None = None,
    tools: Iterable[Any] | ToolRegistry | str = (),
    max_batch: int = DEFAULT_MAX_BATCH,
    **options: Any,
) -> list[Generation]:
    """Generate for every prompt at once; the results come back in the prompts' order.

    A prompt is text, token ids or a list of chat messages, as for ``toolrun.generate()``, whose
    options this takes too; under greedy decoding each result equals what ``generate()`` gives
    for its prompt alone. ``max_batch`` bounds how many sequences decode together. Works from
    synchronous code; inside a running event loop it runs on its own loop in a helper thread (use
    ``agenerate`` there instead).
    """
    _check_max_batch(max_batch)
    prompts = list(prompts)
    for prompt in prompts:
        check_prompt(prompt)
    options = dict(options)
    setup = PromptOptions.pop_from(options)
    decoding = DecodingOptions.build(**options)
    registry = tools if isinstance(tools, ToolRegistry) else ToolRegistry(tools)
    chosen = resolve_model(model)
    states = [SequenceState.for_prompt(chosen, registry, decoding, p, setup) for p in prompts]

    async def run() -> list[Generation]:
        runtime = Runtime(chosen, max_batch=max_batch)
        return list(await asyncio.gather(*(runtime.submit(s) for s in states)))

    return _run_sync(run())


async def agenerate(
    prompt: Prompt,
    *,
    model: Model | str | os.PathLike[str] | None = None,
    tools: Iterable[Any] | ToolRegistry | str = (),
    max_batch: int | None = None,
    **options: Any,
) -> Generation:
    """``toolrun.generate()`` for asyncio: concurrent calls for one model decode as one batch.

    ``prompt`` is text, token ids or chat messages; options as ``generate()``. ``max_batch``
    (optional) sets how many sequences this model's runtime on this loop decodes together from
    now on (default ``DEFAULT_MAX_BATCH``). Cancelling the awaiting task removes only this
    sequence.
    """
    state, runtime = await _prepare(prompt, model, tools, max_batch, options)
    return await runtime.submit(state)


async def astream(
    prompt: Prompt,
    *,
    model: Model | str | os.PathLike[str] | None = None,
    tools: Iterable[Any] | ToolRegistry | str = (),
    max_batch: int | None = None,
    **options: Any,
) -> AsyncIterator[Event]:
    """``toolrun.stream()`` for asyncio, decoding in the same batch as ``agenerate()``.

    Yields TextDelta, CallStarted, CallFinished and Done; bad options raise before the first
    event. Leaving the loop early removes only this sequence from the batch.
    """
    state, runtime = await _prepare(prompt, model, tools, max_batch, options)
    async for event in runtime.stream(state):
        yield event


async def _prepare(
    prompt: Prompt,
    model: Model | str | os.PathLike[str] | None,
    tools: Iterable[Any] | ToolRegistry | str,
    max_batch: int | None,
    options: dict[str, Any],
) -> tuple[SequenceState, Runtime]:
    check_prompt(prompt)
    options = dict(options)
    setup = PromptOptions.pop_from(options)
    decoding = DecodingOptions.build(**options)  # before any model loads
    if max_batch is not None:
        _check_max_batch(max_batch)
    if not isinstance(model, Model):
        model = await asyncio.to_thread(resolve_model, model)
    registry = tools if isinstance(tools, ToolRegistry) else ToolRegistry(tools)
    state = SequenceState.for_prompt(model, registry, decoding, prompt, setup)
    runtime = _runtime_for(model)
    if max_batch is not None:
        runtime.max_batch = max_batch
    return state, runtime


# one runtime per (event loop, model); a runtime is dropped from here when it goes idle
_RUNTIMES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Model, Runtime]] = (
    weakref.WeakKeyDictionary()
)


def _runtime_for(model: Model) -> Runtime:
    runtimes = _RUNTIMES.setdefault(asyncio.get_running_loop(), {})
    for stale in [m for m, r in runtimes.items() if not r.running and m is not model]:
        del runtimes[stale]  # idle runtimes of other models hold nothing worth keeping
    runtime = runtimes.get(model)
    if runtime is None:
        runtime = runtimes[model] = Runtime(model)
    return runtime


def _check_max_batch(max_batch: int) -> int:
    if not isinstance(max_batch, int) or max_batch < 1:
        raise GenerationOptionsError(f"max_batch must be an integer >= 1, got {max_batch!r}")
    return max_batch


def _run_sync(coroutine: Coroutine[Any, Any, T]) -> T:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    # The caller's context goes along (an open trace span, a Calendar's as_of date).
    run = contextvars.copy_context().run
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="toolrun-batch-sync") as pool:
        return pool.submit(run, asyncio.run, coroutine).result()
