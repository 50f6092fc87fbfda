"""A scripted model with one script per session: the outer generation, then a tool's own.

QA and MT ask the generating model a question inside a call. ``ScriptedModel`` would replay the
same script in that nested session; here session n follows ``scripts[n]`` (the last script for
any later session), and every session's prompt stays readable for assertions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from toolrun.testing import ScriptedModel, ScriptedSession


class _ScriptView:
    """The model as one session sees it: its own script, everything else shared."""

    def __init__(self, model: ScriptedModel, script: list[str]) -> None:
        self._model = model
        self.script = script

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)


class ScriptPerSession(ScriptedModel):
    def __init__(self, *scripts: str | Sequence[str]) -> None:
        self.scripts = [[s] if isinstance(s, str) else list(s) for s in scripts]
        super().__init__([piece for script in self.scripts for piece in script])

    def new_session(self) -> ScriptedSession:
        script = self.scripts[min(len(self.sessions), len(self.scripts) - 1)]
        session = ScriptedSession(_ScriptView(self, script))  # type: ignore[arg-type]
        self.sessions.append(session)
        return session

    def prompt(self, session: int) -> str:
        """The text session ``session`` was first fed."""
        return self.decode(self.sessions[session].feeds[0])
