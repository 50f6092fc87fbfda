"""A language model used as a tool (QA, MT): a short answer-only prompt, calls disabled.

By default the model that is generating answers (``ctx.model``): no second model in memory, and
the tool works with whatever model the app loaded. A tool may name its own model instead (a
``toolrun.Model``, or a source for ``toolrun.load_model``, loaded on first use).
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Any

import toolrun

__all__ = ["NO_CONTEXT", "ModelChoice", "ask", "lazy_model", "prepare_tool"]

ModelChoice = toolrun.Model | str | os.PathLike[str] | None
# The context a direct call (outside a generation) gets: no generating model.
NO_CONTEXT = toolrun.ToolContext()


class _LazyModel:
    """A model named by the user, loaded once, the first time a call needs it."""

    def __init__(self, choice: ModelChoice) -> None:
        self.choice = choice
        self._model: toolrun.Model | None = choice if isinstance(choice, toolrun.Model) else None
        self._lock = threading.Lock()

    def get(self) -> toolrun.Model | None:
        if self.choice is None:
            return None
        with self._lock:
            if self._model is None:
                assert not isinstance(self.choice, toolrun.Model)
                self._model = toolrun.load_model(self.choice)
            return self._model


def ask(
    prompt: str,
    *,
    own_model: _LazyModel,
    ctx: toolrun.ToolContext | None,
    max_new_tokens: int,
) -> str:
    """The model's one-line continuation of ``prompt``, stripped; never a tool call.

    Without an own model or a generating one (a direct call outside ``generate``), toolrun's
    default model answers.
    """
    model: Any = own_model.get() or (ctx.model if ctx is not None else None)
    generation = toolrun.generate(
        prompt,
        model=model,
        tools=[],
        allow_calls=False,
        max_new_tokens=max_new_tokens,
        stop=["\n"],
    )
    return generation.text.strip()


def lazy_model(choice: ModelChoice) -> _LazyModel:
    return _LazyModel(choice)


def prepare_tool(function: Any) -> None:
    """Run the registration check of a tool another tool depends on (QA's search)."""
    with contextlib.suppress(toolrun.ToolDefinitionError):  # a plain callable: nothing to check
        toolrun.ToolRegistry([function])
