"""Running prepared tool calls under their deadlines, isolated from one another.

Python cannot kill a thread, and a coroutine that blocks its event loop cannot be cancelled, so a
tool past its deadline is abandoned: the caller gets "timed out" and moves on, the tool keeps its
thread until it returns. Everything here exists so that an abandoned tool cannot hurt the others:

- Sync tools run on a pool that grows instead of queueing: a thread held by a hung call is
  replaced by a new one, so healthy tools never wait behind hung ones.
- Each tool has a concurrency limit (``Tool.max_concurrency``). A call waits for a free slot
  (that wait is not charged to its deadline); a slot frees only when the function really
  returns, so one hung tool holds at most its limit of threads, and once every slot is held by
  an abandoned call, further calls fail at once with a "saturated" error the model reads.
- Each async tool runs on its own event loop in its own thread, never on the caller's loop, so
  its deadline is enforced even when it blocks (``time.sleep`` inside ``async def``) and it
  blocks no other tool. A loop still stuck after its call's deadline is replaced.

``runtime_stats()`` counts abandoned calls and replaced loops for the app's metrics;
``time_left()`` tells a running tool how long it has (the HTTP helper stops reading then).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import queue
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .errors import ToolError
from .syntax import render_value, valid_text
from .tooldef import Tool, ToolContext

__all__ = ["CallOutcome", "RuntimeStats", "aexecute", "execute", "runtime_stats", "time_left"]

T = TypeVar("T")

# An async tool step holding the caller's loop longer than this moves the tool to its own loop.
BLOCKING_S = 0.1
# A deadline that fires this late was held up by someone else's stall: it is extended.
STALL_S = 0.05
# A loop whose call is still running this long after its deadline (and its cancellation) is
# blocked by the tool: new calls go to a fresh loop.
STUCK_GRACE_S = 0.25
# Idle worker threads exit after this long.
IDLE_S = 30.0


@dataclass(frozen=True)
class CallOutcome:
    """What one call produced: a result or an error, never both."""

    result: str | None
    error: str | None
    arguments: dict[str, Any] | None
    latency_s: float

    @property
    def text(self) -> str:
        """What the model reads after the arrow."""
        return f"error: {self.error}" if self.error is not None else (self.result or "")


@dataclass(frozen=True)
class RuntimeStats:
    """Counters of the tool runtime, for an app's metrics (``runtime_stats()``)."""

    threads: int
    """Worker threads alive for sync tools (idle, busy or abandoned)."""
    abandoned: int
    """Calls past their deadline whose tool is still running, each holding a thread."""
    abandoned_total: int
    """Calls abandoned at their deadline since the process started."""
    saturated_total: int
    """Calls refused because every slot of their tool was taken."""
    loops: int
    """Event loops running async tools, replaced ones still blocked included."""
    loops_replaced: int
    """Async tools' loops replaced because a tool blocked its loop past a deadline."""


def runtime_stats() -> RuntimeStats:
    """The tool runtime's counters now."""
    with _stats_lock:
        return RuntimeStats(
            threads=_workers.threads,
            abandoned=_counts["abandoned"],
            abandoned_total=_counts["abandoned_total"],
            saturated_total=_counts["saturated_total"],
            loops=_counts["loops"],
            loops_replaced=_counts["loops_replaced"],
        )


_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "toolrun_call_deadline", default=None
)


def time_left() -> float | None:
    """Inside a tool: seconds left before this call's deadline (None when it has none).

    Networked tools use it to stop work the caller has already given up on.
    """
    deadline = _deadline.get()
    return None if deadline is None else deadline - time.monotonic()


def execute(found: Tool, arguments: dict[str, Any], context: ToolContext | None) -> CallOutcome:
    """Run a prepared call (validated, authorised) with its deadline, from synchronous code."""
    gate = _gate(found)
    refused = gate.refusal()
    if refused is not None:
        return _failure(refused, arguments, 0.0)
    timeout = found.timeout
    if not gate.acquire(timeout):
        return _failure(gate.saturated(), arguments, 0.0)
    started = time.perf_counter()
    call = _Call(gate)
    future = _submit(found, arguments, context, call)
    try:
        text = future.result(timeout=timeout)
    except (concurrent.futures.TimeoutError, TimeoutError):
        call.abandon()
        return _failure(f"timed out after {timeout:g} s", arguments, started)
    except Exception as exc:
        return _failure(_describe(exc), arguments, started)
    except BaseException:  # KeyboardInterrupt in the caller: the tool goes on without it
        call.abandon()
        raise
    return CallOutcome(text, None, arguments, time.perf_counter() - started)


async def aexecute(
    found: Tool, arguments: dict[str, Any], context: ToolContext | None
) -> CallOutcome:
    """Run a prepared call from a running event loop, without letting it stall the loop.

    Sync tools run on worker threads. Async tools run on the caller's loop (so they can share
    its clients and locks) under a watch on how long each step holds the loop: one that holds
    it past its deadline times out even if it then returns, and is moved to its own loop for
    later calls. A deadline passes only on time the call itself could use: a stall of the loop
    caused by something else extends it (at most by the timeout once more).
    """
    gate = _gate(found)
    refused = gate.refusal()
    if refused is not None:
        return _failure(refused, arguments, 0.0)
    timeout = found.timeout
    if not await gate.aacquire(timeout):
        return _failure(gate.saturated(), arguments, 0.0)
    started = time.perf_counter()
    call = _Call(gate)
    watch: _Watched | None = None
    waiter: asyncio.Future[str]
    if found.is_async and not _blocks_its_loop(found):
        watch, waiter = _start_on_this_loop(found, arguments, context, call)
    else:
        waiter = asyncio.wrap_future(_submit(found, arguments, context, call))
    try:
        text = await _wait_fairly(waiter, timeout, watch)
    except TimeoutError:
        call.abandon()
        if watch is not None and timeout is not None and watch.busy > timeout:
            _mark_blocking(found, watch.longest)
            return _failure(
                f"timed out after {timeout:g} s (it blocked the event loop for "
                f"{watch.longest:.2g} s: run blocking code with asyncio.to_thread)",
                arguments,
                started,
            )
        return _failure(f"timed out after {timeout:g} s", arguments, started)
    except asyncio.CancelledError:  # the generation was cancelled: so is the call
        call.abandon()
        raise
    except Exception as exc:
        return _failure(_describe(exc), arguments, started)
    finally:
        if watch is not None and watch.longest > BLOCKING_S:
            _mark_blocking(found, watch.longest)
    return CallOutcome(text, None, arguments, time.perf_counter() - started)


async def _wait_fairly(
    waiter: asyncio.Future[str], timeout: float | None, watch: _Watched | None
) -> str:
    """The call's result, or TimeoutError once it has had ``timeout`` seconds of its own."""
    if timeout is None:
        return await waiter
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    extended = 0.0
    while not waiter.done():
        left = deadline - loop.time()
        if left > 0:
            await asyncio.wait({waiter}, timeout=left)
            continue
        if watch is not None and watch.busy > timeout:
            break  # the call itself held the loop past its deadline
        late = -left  # the wake-up came this late: the loop was held up by something else
        if late > STALL_S and extended < timeout:
            more = min(late, timeout - extended)
            extended += more
            deadline = loop.time() + more  # the stalled time back, counted from now
            continue
        break
    if not waiter.done() or (watch is not None and watch.busy > timeout):
        waiter.cancel()
        raise TimeoutError
    return waiter.result()


def _start_on_this_loop(
    found: Tool, arguments: dict[str, Any], context: ToolContext | None, call: _Call
) -> tuple[_Watched, asyncio.Future[str]]:
    """Run an async tool as a task on the running loop, timing each step it takes."""
    kwargs = found._call_args(arguments, context)
    deadline = None if found.timeout is None else time.monotonic() + found.timeout

    async def run() -> str:
        _deadline.set(deadline)
        return _render(await found.function(**kwargs))

    watch = _Watched(run())
    task: asyncio.Future[str] = asyncio.ensure_future(watch)
    call.cancel = task.cancel
    task.add_done_callback(lambda _: call.finish())
    return watch, task


class _Watched:
    """Awaits a coroutine step by step, adding up how long its steps hold the loop."""

    def __init__(self, coroutine: Coroutine[Any, Any, str]) -> None:
        self.coroutine = coroutine
        self.busy = 0.0
        self.longest = 0.0

    def __await__(self) -> Any:
        to_send: Any = None
        to_throw: BaseException | None = None
        while True:
            started = time.perf_counter()
            try:
                if to_throw is not None:
                    yielded = self.coroutine.throw(to_throw)
                else:
                    yielded = self.coroutine.send(to_send)
            except StopIteration as stop:
                self._count(started)
                return stop.value
            except BaseException:
                self._count(started)
                raise
            self._count(started)
            try:
                to_send, to_throw = (yield yielded), None
            except GeneratorExit:
                self.coroutine.close()
                raise
            except BaseException as exc:  # a cancellation, passed on to the tool
                to_send, to_throw = None, exc

    def _count(self, started: float) -> None:
        step = time.perf_counter() - started
        self.busy += step
        self.longest = max(self.longest, step)


def _submit(
    found: Tool, arguments: dict[str, Any], context: ToolContext | None, call: _Call
) -> concurrent.futures.Future[str]:
    """Start the call on its thread or loop; the future holds the result already as text."""
    kwargs = found._call_args(arguments, context)
    deadline = None if found.timeout is None else time.monotonic() + found.timeout
    if found.is_async:

        async def run_async() -> str:
            _deadline.set(deadline)
            return _render(await found.function(**kwargs))

        return _lane(found).submit(run_async, call)

    def run_sync() -> str:
        _deadline.set(deadline)
        return _render(found.function(**kwargs))

    future = _workers.submit(run_sync)
    call.cancel = lambda: bool(future.cancel())  # stops it only if it has not started
    # Done means returned, or cancelled before it started: either way the slot is free.
    future.add_done_callback(lambda _: call.finish())
    return future


class _RenderError(Exception):
    """The tool returned, but its value cannot be made text."""


def _render(value: Any) -> str:
    """The result as valid text, made on the tool's own thread (inside its deadline)."""
    try:
        return valid_text(render_value(value))
    except Exception as exc:
        raise _RenderError(
            f"the result ({_type_name(value)}) cannot be made text: {_describe(exc)}"
        ) from exc


def _failure(message: str, arguments: dict[str, Any] | None, started: float) -> CallOutcome:
    latency = time.perf_counter() - started if started else 0.0
    return CallOutcome(None, valid_text(message), arguments, latency)


def _describe(exc: BaseException) -> str:
    """The error text the model reads; never raises, whatever the exception's ``__str__`` does."""
    try:
        text = str(exc)
    except Exception:
        text = "(its message cannot be made text)"
    if isinstance(exc, (ToolError, _RenderError)):
        return text
    name = _type_name(exc)
    return f"{name}: {text}" if text else name


def _type_name(value: Any) -> str:
    return type(value).__name__


# Calls and the per-tool gate.

_stats_lock = threading.Lock()
_counts = {"abandoned": 0, "abandoned_total": 0, "saturated_total": 0, "loops": 0}
_counts["loops_replaced"] = 0


class _Call:
    """One running call: it frees its slot when the function returns, however late."""

    def __init__(self, gate: _Gate) -> None:
        self.gate = gate
        self.abandoned_at: float | None = None
        self.cancel: Callable[[], object] = lambda: None
        """Asks the tool to stop (async tools: cancels its task); set by whoever starts it."""
        self._done = False
        self._lock = threading.Lock()

    def finish(self) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True
            was_abandoned = self.abandoned_at is not None
        if was_abandoned:
            with _stats_lock:
                _counts["abandoned"] -= 1
                self.gate.abandoned -= 1
        self.gate.release()

    def abandon(self) -> None:
        """The caller stops waiting: cancel the tool if it can be, count it until it returns."""
        self.cancel()
        with self._lock:
            if self._done or self.abandoned_at is not None:
                return
            self.abandoned_at = time.monotonic()
        with _stats_lock:
            _counts["abandoned"] += 1
            _counts["abandoned_total"] += 1
            self.gate.abandoned += 1

    @property
    def stuck(self) -> bool:
        """Still running well after it was abandoned (its loop is blocked)."""
        with self._lock:
            return (
                not self._done
                and self.abandoned_at is not None
                and time.monotonic() - self.abandoned_at > STUCK_GRACE_S
            )


class _Gate:
    """A tool's concurrency limit, shared by every registry that holds the same function."""

    def __init__(self, name: str, limit: int | None) -> None:
        self.name = name
        self.limit = limit
        self.abandoned = 0
        self._slots = threading.BoundedSemaphore(limit) if limit is not None else None

    def refusal(self) -> str | None:
        """A call cannot get a slot soon when abandoned calls hold them all: say so at once."""
        if self.limit is not None and self.abandoned >= self.limit:
            return self.saturated()
        return None

    def saturated(self) -> str:
        with _stats_lock:
            _counts["saturated_total"] += 1
        held = f", {self.abandoned} of them past their deadline" if self.abandoned else ""
        return (
            f"{self.name} is saturated: {self.limit} calls already running (its limit{held}); "
            "try again later"
        )

    def acquire(self, timeout: float | None) -> bool:
        return self._slots is None or self._slots.acquire(timeout=timeout)

    async def aacquire(self, timeout: float | None) -> bool:
        """Wait for a slot without blocking the loop (polling: saturation is the rare case)."""
        if self._slots is None or self._slots.acquire(blocking=False):
            return True
        give_up = None if timeout is None else time.monotonic() + timeout
        pause = 0.002
        while give_up is None or time.monotonic() < give_up:
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.05)
            if self._slots.acquire(blocking=False):
                return True
        return False

    def release(self) -> None:
        if self._slots is not None:
            self._slots.release()


class _ByFunction(Generic[T]):
    """Runtime state kept per tool function, dropped when the function is."""

    def __init__(self) -> None:
        self._weak: weakref.WeakKeyDictionary[Callable[..., Any], T] = weakref.WeakKeyDictionary()
        self._strong: dict[int, tuple[Callable[..., Any], T]] = {}

    def get(self, function: Callable[..., Any]) -> T | None:
        try:
            return self._weak.get(function)
        except TypeError:  # a callable that takes no weak references: kept for good
            entry = self._strong.get(id(function))
            return entry[1] if entry is not None else None

    def set(self, function: Callable[..., Any], value: T) -> bool:
        """Store ``value``; True when it goes with ``function`` (False: kept for good)."""
        try:
            self._weak[function] = value
            return True
        except TypeError:
            self._strong[id(function)] = (function, value)
            return False


_gates: _ByFunction[_Gate] = _ByFunction()
_gates_lock = threading.Lock()


def _gate(found: Tool) -> _Gate:
    """The gate of ``found``'s function (registries built from one function share it)."""
    with _gates_lock:
        gate = _gates.get(found.function)
        if gate is None or gate.limit != found.max_concurrency:
            gate = _Gate(found.name, found.max_concurrency)
            _gates.set(found.function, gate)
        return gate


# Worker threads for sync tools.


class _Workers:
    """Threads for sync tools that grow instead of queueing; idle ones exit after IDLE_S."""

    def __init__(self) -> None:
        self.threads = 0
        self._idle = 0
        self._queue: queue.SimpleQueue[tuple[concurrent.futures.Future[Any], Callable[[], Any]]]
        self._queue = queue.SimpleQueue()
        self._lock = threading.Lock()

    def submit(self, function: Callable[[], Any]) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        # The caller's context (the deadline, tracing) goes with the call.
        run = contextvars.copy_context().run
        with self._lock:
            self._queue.put((future, lambda: run(function)))
            if self._idle > 0:
                self._idle -= 1  # that idle thread takes it
            else:
                self.threads += 1
                threading.Thread(target=self._work, name="toolrun-tool", daemon=True).start()
        return future

    def _work(self) -> None:
        while True:
            try:
                future, function = self._queue.get(timeout=IDLE_S)
            except queue.Empty:
                with self._lock:
                    if self._idle > 0 and self._queue.empty():
                        self._idle -= 1
                        self.threads -= 1
                        return
                continue
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(function())
                except BaseException as exc:
                    future.set_exception(exc)
            del future, function  # drop the result before waiting for the next call
            with self._lock:
                self._idle += 1


_workers = _Workers()


# Event loops for async tools.


class _Lane:
    """An event loop in a daemon thread, running one async tool's calls."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.calls: set[_Call] = set()
        self.retired = False
        self._thread = threading.Thread(target=self._run, name=f"toolrun-{name}", daemon=True)
        with _stats_lock:
            _counts["loops"] += 1
        self._thread.start()

    def _run(self) -> None:
        try:
            self.loop.run_forever()
        finally:
            self.loop.close()
            with _stats_lock:
                _counts["loops"] -= 1

    def submit(
        self, make: Callable[[], Coroutine[Any, Any, str]], call: _Call
    ) -> concurrent.futures.Future[str]:
        """Run ``make()`` as a task on this loop; ``call`` finishes when the task really ends."""
        future: concurrent.futures.Future[str] = concurrent.futures.Future()
        context = contextvars.copy_context()  # the caller's context (tracing) goes along
        self.calls.add(call)

        def start() -> None:
            if not future.set_running_or_notify_cancel():
                self._ended(call)
                return
            task = context.run(self.loop.create_task, make())  # copies the context (3.10)
            call.cancel = lambda: self.loop.call_soon_threadsafe(task.cancel)
            task.add_done_callback(lambda done: self._settle(done, future, call))

        self.loop.call_soon_threadsafe(start)
        return future

    def _settle(
        self, task: asyncio.Task[str], future: concurrent.futures.Future[str], call: _Call
    ) -> None:
        if task.cancelled():
            future.set_exception(concurrent.futures.CancelledError())
        elif task.exception() is not None:
            future.set_exception(task.exception())
        else:
            future.set_result(task.result())
        self._ended(call)

    def _ended(self, call: _Call) -> None:
        call.finish()
        self.calls.discard(call)
        if self.retired:
            self._stop_if_idle()

    @property
    def stuck(self) -> bool:
        return any(call.stuck for call in list(self.calls))

    def retire(self) -> None:
        """Take no more calls; the loop stops once its running calls end."""
        if self.retired:
            return
        self.retired = True
        with contextlib.suppress(RuntimeError):  # the loop is closed already
            self.loop.call_soon_threadsafe(self._stop_if_idle)

    def _stop_if_idle(self) -> None:
        if not asyncio.all_tasks(self.loop):
            self.loop.stop()


_lanes: _ByFunction[_Lane] = _ByFunction()
_lanes_lock = threading.Lock()


def _lane(found: Tool) -> _Lane:
    """The loop for ``found``'s function, replaced when a call has blocked it."""
    with _lanes_lock:
        lane = _lanes.get(found.function)
        if lane is not None and lane.stuck:
            lane.retire()
            with _stats_lock:
                _counts["loops_replaced"] += 1
            lane = None
        if lane is None:
            lane = _Lane(found.name)
            if _lanes.set(found.function, lane):
                # A tool made for one request (a closure) takes its loop with it when it goes.
                weakref.finalize(found.function, lane.retire)
        return lane


# Async tools that hold the caller's loop.

_blocking: _ByFunction[float] = _ByFunction()
_blocking_lock = threading.Lock()


def _blocks_its_loop(found: Tool) -> bool:
    with _blocking_lock:
        return _blocking.get(found.function) is not None


def _mark_blocking(found: Tool, seconds: float) -> None:
    """From now on this tool runs on its own loop; say so once."""
    with _blocking_lock:
        if _blocking.get(found.function) is not None:
            return
        _blocking.set(found.function, seconds)
    warnings.warn(
        f"toolrun: the async tool {found.name} held the event loop for {seconds:.2g} s in one "
        "step (blocking code in an async def); its calls now run on a loop of their own. "
        "Run blocking code with asyncio.to_thread.",
        RuntimeWarning,
        stacklevel=2,
    )
