"""Step 2: run candidate calls through the registry, once per distinct call."""

from __future__ import annotations

import datetime as dt

from ..registry import CallOutcome, ToolRegistry
from ..syntax import render_value, sanitize_result
from ..tools.calendar_tool import as_of

__all__ = ["Executor"]


class Executor:
    """Runs ``Name(args)`` through a ToolRegistry and remembers results (a text proposes the same
    expression at many positions). A failed call yields None: it is dropped, never annotated.
    ``today`` is the text's own date, when it has one: the Calendar answers with it (as_of).

    Arguments are validated by the registry; sync tools then run in the calling thread without
    the registry's timeout (async tools and tools needing approval go through ``call``)."""

    def __init__(self, registry: ToolRegistry, special_tokens: tuple[str, ...] = ()) -> None:
        self.registry = registry
        self.special_tokens = special_tokens
        self._results: dict[tuple[str, str, dt.date | None], str | None] = {}
        self.executed = 0
        self.failed = 0

    def __call__(self, tool_name: str, arguments: str, today: dt.date | None = None) -> str | None:
        key = (tool_name.lower(), arguments, today)
        if key not in self._results:
            found = self.registry.get(tool_name)
            limit = found.max_result_chars if found is not None else 300
            with as_of(today):
                text = self._run(tool_name, arguments)
            if text is None:
                self.failed += 1
                self._results[key] = None
            else:
                self.executed += 1
                self._results[key] = sanitize_result(text, limit, self.special_tokens) or None
        return self._results[key]

    def _run(self, tool_name: str, arguments: str) -> str | None:
        prepared = self.registry.prepare(tool_name, arguments)
        if isinstance(prepared, CallOutcome):
            return None
        found, bound = prepared
        if found.is_async or found.requires_approval:
            outcome = self.registry.call(tool_name, arguments)
            return outcome.result if outcome.error is None else None
        # A sync tool runs in this thread: a text proposes hundreds of candidates, and handing
        # each to the registry's worker thread cost more than the arithmetic on a busy machine.
        try:
            return render_value(found.function(**found._call_args(bound, None)))
        except Exception:
            return None
