"""The server's half of a turn that the client sees only in part.

When one generation runs server tools and then calls a client tool, the client receives its own
calls (``message.tool_calls``); the server's calls and results go out in ``server_tool_calls``,
which an OpenAI client does not send back. For the model to read, on the next request, the
conversation it actually wrote (its server calls, their results, then the client's results),
the server keeps that generation's messages under the client calls' ids and puts them back in
place of the assistant message that carries those ids.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from ..results import ClientCall, Generation

__all__ = ["TurnMemory"]


class TurnMemory:
    """The messages of recent generations that handed calls to the client after server calls."""

    def __init__(self, capacity: int = 4096) -> None:
        self.capacity = capacity
        self._turns: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()
        self._lock = threading.Lock()  # requests run on the event loop and in worker threads

    def remember(self, generation: Generation, client_calls: Sequence[ClientCall]) -> None:
        """Keep ``generation``'s messages when it ran server tools and then handed calls back."""
        if not client_calls or not generation.calls:
            return  # nothing the client's echo would leave out
        with self._lock:
            self._turns[client_calls[0].id] = list(generation.messages)
            while len(self._turns) > self.capacity:
                self._turns.popitem(last=False)

    def restore(self, messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """``messages``, each assistant message whose calls were handed out after server calls
        replaced by the messages that generation wrote (its server calls and their results)."""
        out: list[dict[str, Any]] = []
        for message in messages:
            calls = message.get("tool_calls") if message.get("role") == "assistant" else None
            first = calls[0].get("id") if calls and isinstance(calls[0], dict) else None
            with self._lock:
                kept = self._turns.get(first) if isinstance(first, str) else None
                if kept is not None:
                    self._turns.move_to_end(first)  # type: ignore[arg-type]
            out.extend(kept if kept is not None else [message])
        return out
