"""The server's one scheduler: every request becomes a row of the same continuous batch.

``Engine`` owns the model, the server-side tools, the ``Runtime`` (created on the server's event
loop the first time it is needed) and the admission rule: at most ``max_batch`` rows decode and
``max_queue`` wait; a request past that is refused with 503 at once instead of waiting forever.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from ..backends.base import Model
from ..batch import Runtime
from ..registry import ToolRegistry
from ..results import Event, Generation
from ..sequence import SequenceState
from .errors import APIError
from .metrics import Metrics
from .prefix_cache import PrefixCache, reusing_batches
from .settings import ServerSettings
from .turns import TurnMemory

__all__ = ["Engine", "context_window"]


class Engine:
    """Runs sequences for the server's requests on one ``Runtime`` and keeps the counts."""

    def __init__(
        self, model: Model, registry: ToolRegistry, settings: ServerSettings, metrics: Metrics
    ) -> None:
        self.model = model
        self.registry = registry
        self.settings = settings
        self.metrics = metrics
        self.model_id = settings.model_id or model.name
        self.context_length = settings.context_length or context_window(model)
        self.chat_template = settings.chat_template
        """A template to render chats with instead of the one the runtime would choose."""
        self.turns = TurnMemory()
        """Server calls made before handing calls to the client, restored on the next request."""
        self.in_flight = 0
        self.unapproved = (
            {t.name.lower() for t in registry if t.requires_approval}
            if settings.approve is None
            else set()
        )
        """Server tools that need an approval this server cannot give: they never run here."""
        self.prefix_cache = (
            PrefixCache(settings.prefix_cache_bytes) if settings.prefix_cache_bytes else None
        )
        self._runtime: Runtime | None = None

    @property
    def runtime(self) -> Runtime:
        """The scheduler, made on first use; call it on the server's event loop."""
        if self._runtime is None:
            factory = reusing_batches(self.prefix_cache) if self.prefix_cache is not None else None
            self._runtime = Runtime(
                self.model, max_batch=self.settings.max_batch, batch_factory=factory
            )
        return self._runtime

    @property
    def queue_depth(self) -> int:
        return len(self._runtime.waiting) if self._runtime is not None else 0

    @property
    def active_rows(self) -> int:
        return len(self._runtime.active) if self._runtime is not None else 0

    def admit(self) -> Callable[[], None]:
        """Hold a place for one request, or refuse it (503) when rows and queue are full.

        Returns the function that gives the place back (calling it twice gives it back once).
        """
        capacity = self.settings.max_batch + self.settings.max_queue
        if self.in_flight >= capacity:
            raise APIError(
                503,
                f"the server is at capacity ({self.settings.max_batch} decoding, "
                f"{self.settings.max_queue} waiting); retry shortly",
                type="server_error",
                code="server_overloaded",
                headers={"Retry-After": "1"},
            )
        self.in_flight += 1
        held = True

        def release() -> None:
            nonlocal held
            if held:
                held = False
                self.in_flight -= 1

        return release

    def token_budget(
        self, prompt_tokens: int, requested: int | None, param: str = "max_tokens"
    ) -> int:
        """How many tokens this request may generate; 400 when it cannot fit the context.

        ``param`` names the request field ``requested`` came from, for the error."""
        settings = self.settings
        if requested is not None and requested > settings.max_tokens:
            raise APIError(
                400,
                f"{param} is {requested}, above this server's limit of {settings.max_tokens}",
                param=param,
                code="integer_above_max_value",
            )
        room = None if self.context_length is None else self.context_length - prompt_tokens
        if room is not None and (room < 1 or (requested is not None and requested > room)):
            asked = requested if requested is not None else 1
            raise APIError(
                400,
                f"This model's maximum context length is {self.context_length} tokens. However, "
                f"you requested {prompt_tokens + asked} tokens ({prompt_tokens} in the prompt, "
                f"{asked} in the completion). Please reduce the prompt or the completion length.",
                param="messages",
                code="context_length_exceeded",
            )
        budget = requested if requested is not None else settings.default_max_tokens
        return min(budget, room) if room is not None else budget

    async def events(self, state: SequenceState) -> AsyncIterator[Event]:
        """The sequence's events as it decodes in the shared batch.

        Leaving the iteration early (a client that went away) cancels the row.
        """
        async for event in self.runtime.stream(state):
            yield event

    def record(self, generation: Generation, started: float, first_text: float | None) -> None:
        self.metrics.usage(
            generation.prompt_tokens, generation.generated_tokens, generation.spliced_tokens
        )
        for call in generation.calls:
            self.metrics.tool_call(call.name, "ok" if call.ok else "error")
        if first_text is not None:
            self.metrics.time_to_first_token.observe(first_text - started)

    def gauges(self) -> dict[str, tuple[str, Any]]:
        capacity = self.settings.max_batch
        gauges: dict[str, tuple[str, Any]] = {
            "toolrun_queue_depth": ("Requests waiting for a batch row.", lambda: self.queue_depth),
            "toolrun_batch_rows": ("Rows decoding in the batch now.", lambda: self.active_rows),
            "toolrun_batch_occupancy": (
                "Decoding rows as a fraction of max_batch.",
                lambda: self.active_rows / capacity,
            ),
            "toolrun_requests_in_flight": (
                "Requests admitted and not yet answered.",
                lambda: self.in_flight,
            ),
        }
        cache = self.prefix_cache
        if cache is not None:
            gauges |= {
                "toolrun_prefix_cache_bytes": (
                    "Memory held by cached prefixes.",
                    lambda: cache.bytes,
                ),
                "toolrun_prefix_cache_hits_total": (
                    "Requests that started from a cached prefix.",
                    lambda: cache.hits,
                ),
                "toolrun_prefix_cache_misses_total": (
                    "Requests that found no cached prefix.",
                    lambda: cache.misses,
                ),
                "toolrun_prefix_cache_reused_tokens_total": (
                    "Prompt tokens not prefilled again.",
                    lambda: cache.reused_tokens,
                ),
            }
        return gauges


def context_window(model: Model) -> int | None:
    """The most tokens the model's positions cover, when the backend says."""
    return model.context_length
