"""Batched decoding: many sequences decode together, and each one calls its own tools.

``generate_batch(prompts)`` and ``await agenerate(prompt)`` hand sequences to a ``Runtime``, a
scheduler task on the event loop (one per model and loop for ``agenerate``). One turn of it:

1. drop the sequences that finished or were cancelled, and admit waiting ones up to max_batch;
2. run one forward pass, in a worker thread so that tools keep running on the loop, for every
   sequence with tokens to feed: a new prompt, its last token, or a tool result to splice;
3. for each fed sequence its ``SequenceState`` picks and accepts a token, exactly as
   ``toolrun.generate()`` does: text is fed next turn; a call starts the tool (``registry.acall``:
   async tools on the loop, sync ones in threads) and the sequence pauses while others go on;
   done resolves the request;
4. when a tool returns, its result is spliced (``SequenceState.splice``) and fed from the next
   turn on (a long one SPLICE_CHUNK tokens per pass); then the sequence picks again.

The forward pass comes from the model: ``model.new_batch()`` when a backend provides one, the
shared-cache transformers batch (``backends/transformers_batch.py``), or, for any other model,
one session per sequence fed in turn (no batching, but tools still run concurrently).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import time
import weakref
from collections import deque
from collections.abc import Coroutine, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import torch

from .backends.base import Model, Session
from .errors import GenerationOptionsError
from .options import DecodingOptions
from .registry import ToolRegistry
from .results import Generation
from .sequence import SequenceState
from .syntax import CallSpan

__all__ = ["DEFAULT_MAX_BATCH", "Batch", "Runtime", "SessionBatch", "agenerate", "generate_batch"]

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
    """The best batched forward pass this model offers."""
    hook = getattr(model, "new_batch", None)
    if callable(hook):
        batch: Batch = hook()
        return batch
    from .backends.transformers import TransformersModel

    if isinstance(model, TransformersModel):
        from .backends.transformers_batch import TransformersBatch, supports_batching

        if supports_batching(model):
            return TransformersBatch(model)
    return SessionBatch(model)


@dataclass(eq=False)
class _Request:
    key: int
    state: SequenceState
    future: asyncio.Future[Generation]
    feed: list[int] | None = None
    phase: str = "prefill"  # which timing the next forward pass counts toward
    tool: asyncio.Task[None] | None = None
    joined: bool = False
    submitted: float = field(default_factory=time.perf_counter)


class Runtime:
    """Gathers the sequences of one model into batches on the running event loop."""

    def __init__(self, model: Model, *, max_batch: int = DEFAULT_MAX_BATCH) -> None:
        self.model = model
        self.max_batch = _check_max_batch(max_batch)
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
        loop = asyncio.get_running_loop()
        request = _Request(next(self._keys), state, loop.create_future())
        request.future.add_done_callback(lambda _: self._wake.set())
        self.waiting.append(request)
        self._wake.set()
        if self._task is None:
            self._task = loop.create_task(self._run(), name=f"toolrun-batch {self.model.name}")
        return await request.future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        backend = open_batch(self.model)
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
                tick = time.perf_counter()
                logits = await loop.run_in_executor(worker, backend.step, feeds)
                elapsed = time.perf_counter() - tick
                self.steps += 1
                for r in fed:
                    r.state.timings[r.phase] += elapsed
                    if r.feed is None and not r.future.done():  # a split result is fully fed
                        r.phase = "decode"
                        self._advance(r, logits[r.key])
        except Exception as exc:  # a failed forward pass fails every sequence in the batch
            for r in [*self.active.values(), *self.waiting]:
                if not r.future.done():
                    r.future.set_exception(exc)
        except BaseException:  # the scheduler itself was cancelled (the loop is closing)
            for r in [*self.active.values(), *self.waiting]:
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
                continue
            request.feed = list(request.state.prompt_ids)
            self.active[request.key] = request

    def _advance(self, request: _Request, logits: torch.Tensor) -> None:
        """One token for one sequence: what ``loop._decode`` does, without the forward pass."""
        state = request.state
        tick = time.perf_counter()
        try:
            step = state.accept(state.pick(logits))
        except Exception as exc:  # an app's logits processor or approver failed
            request.future.set_exception(exc)
            return
        state.timings["decode"] += time.perf_counter() - tick
        if step.kind == "text":
            request.feed = [state.history[-1]]
        elif step.kind == "done":
            self._finish(request)
        else:
            assert step.call is not None
            request.tool = asyncio.ensure_future(self._call(request, step.call))

    async def _call(self, request: _Request, call: CallSpan) -> None:
        """Run one tool while the batch goes on; splice its result for the next pass."""
        state = request.state
        tick = time.perf_counter()
        try:
            outcome = await state.registry.acall(
                call.name, call.arguments, policy=state.policy, context=state.call_context(call)
            )
            state.timings["tools"] += time.perf_counter() - tick
            fed, _ = state.splice(call, outcome)
        except Exception as exc:
            if not request.future.done():
                request.future.set_exception(exc)
            return
        finally:
            request.tool = None
        if state.after_splice() is not None:
            self._finish(request)
        else:
            request.feed, request.phase = fed, "splice"
        self._wake.set()

    def _finish(self, request: _Request) -> None:
        request.state.timings["total"] = time.perf_counter() - request.submitted
        if not request.future.done():
            request.future.set_result(request.state.result())


def generate_batch(
    prompts: Iterable[str | Sequence[int]],
    *,
    model: Model | None = None,
    tools: Iterable[Any] | ToolRegistry = (),
    max_batch: int = DEFAULT_MAX_BATCH,
    **options: Any,
) -> list[Generation]:
    """Generate for every prompt at once; the results come back in the prompts' order.

    Takes the options of ``toolrun.generate()``; under greedy decoding each result equals what
    ``generate()`` gives for its prompt alone. ``max_batch`` bounds how many sequences decode
    together. Works from synchronous code; inside a running event loop it runs on its own loop
    in a helper thread (use ``agenerate`` there instead).
    """
    _check_max_batch(max_batch)
    chosen = model if model is not None else _default_model()
    states = _states(list(prompts), chosen, tools, options)

    async def run() -> list[Generation]:
        runtime = Runtime(chosen, max_batch=max_batch)
        return list(await asyncio.gather(*(runtime.submit(s) for s in states)))

    return _run_sync(run())


async def agenerate(
    prompt: str | Sequence[int],
    *,
    model: Model | None = None,
    tools: Iterable[Any] | ToolRegistry = (),
    max_batch: int | None = None,
    **options: Any,
) -> Generation:
    """``toolrun.generate()`` for asyncio: concurrent calls for one model decode as one batch.

    ``max_batch`` (optional) sets how many sequences this model's runtime on this loop decodes
    together from now on (default ``DEFAULT_MAX_BATCH``). Cancelling the awaiting task removes
    only this sequence.
    """
    if model is None:
        model = await asyncio.to_thread(_default_model)
    (state,) = _states([prompt], model, tools, options)
    runtime = _runtime_for(model)
    if max_batch is not None:
        runtime.max_batch = _check_max_batch(max_batch)
    return await runtime.submit(state)


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


def _states(
    prompts: list[str | Sequence[int]],
    model: Model,
    tools: Iterable[Any] | ToolRegistry,
    options: dict[str, Any],
) -> list[SequenceState]:
    registry = tools if isinstance(tools, ToolRegistry) else ToolRegistry(tools)
    decoding = DecodingOptions.build(**options)
    return [SequenceState.for_prompt(model, registry, decoding, p) for p in prompts]


def _check_max_batch(max_batch: int) -> int:
    if not isinstance(max_batch, int) or max_batch < 1:
        raise GenerationOptionsError(f"max_batch must be an integer >= 1, got {max_batch!r}")
    return max_batch


def _default_model() -> Model:
    from .models import default_model

    return default_model()


def _run_sync(coroutine: Coroutine[Any, Any, T]) -> T:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="toolrun-batch-sync") as pool:
        return pool.submit(asyncio.run, coroutine).result()
