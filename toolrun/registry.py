"""The registry: resolving tools by name, running calls, and the per-generation policy.

At call time nothing raises: an unknown tool, invalid arguments, an exception, a timeout or a
refusal each become a ``CallOutcome`` whose error text the model reads. Tools are defined in
``tooldef.py`` and run under their deadlines by ``invocation.py``; installed ones are found
through the ``toolrun.tools`` entry-point group.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import sys
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic

from .errors import ToolDefinitionError, ToolNotFoundError
from .invocation import (
    CallOutcome,
    RuntimeStats,
    aexecute,
    execute,
    runtime_stats,
    time_left,
)
from .syntax import ArgumentSyntaxError, valid_text
from .tooldef import (
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_MAX_RESULT_CHARS,
    DEFAULT_TIMEOUT_S,
    TOOL_ATTRIBUTE,
    Tool,
    ToolContext,
    tool,
)

__all__ = [
    "DEFAULT_MAX_CONCURRENCY",
    "DEFAULT_MAX_RESULT_CHARS",
    "DEFAULT_TIMEOUT_S",
    "ENTRY_POINT_GROUP",
    "CallOutcome",
    "CallPolicy",
    "RuntimeStats",
    "Tool",
    "ToolContext",
    "ToolRegistry",
    "aexecute",
    "available_tools",
    "execute",
    "resolve_tool",
    "runtime_stats",
    "time_left",
    "tool",
]

ENTRY_POINT_GROUP = "toolrun.tools"


@dataclass
class CallPolicy:
    """Per-generation limits: how many calls may run, and who approves sensitive ones.

    ``approve(name, arguments)`` is asked before any tool marked ``requires_approval`` runs; with
    no callback such tools are refused.
    """

    max_calls: int | None = None
    approve: Callable[[str, dict[str, Any]], bool] | None = None
    calls_made: int = 0

    @property
    def exhausted(self) -> bool:
        return self.max_calls is not None and self.calls_made >= self.max_calls

    def refusal(self, tool: Tool, arguments: dict[str, Any]) -> str | None:
        """The reason this call may not run, or None; counts the call when it may."""
        if self.exhausted:
            return f"call limit reached ({self.max_calls} per generation)"
        if tool.requires_approval:
            if self.approve is None:
                return f"{tool.name} needs approval and no approver is set"
            try:
                approved = self.approve(tool.name, dict(arguments))
            except Exception as exc:
                return f"approval failed: {_describe(exc)}"
            if not approved:
                return f"call to {tool.name} was not approved"
        self.calls_made += 1
        return None


class ToolRegistry:
    """The tools one generation may use, looked up by name without regard to case."""

    def __init__(self, tools: Iterable[Any] | str | Tool | None = ()) -> None:
        self._tools: dict[str, Tool] = {}
        if tools is None:
            tools = ()
        if isinstance(tools, str) or not isinstance(tools, Iterable):
            tools = [tools]  # one tool given bare: "calculator" is not the tools c, a, l, ...
        for item in tools:
            if isinstance(item, str) and item.startswith("mcp:"):
                from .mcp import reference_tools  # lazy: the mcp SDK is an optional extra

                for found in reference_tools(item):  # every tool the MCP server lists
                    self.register(found)
                continue
            self.register(item)

    def register(self, item: Any) -> Tool:
        """Add a Tool, a function (decorated or not) or the name of an available tool."""
        resolved = resolve_tool(item)
        key = resolved.name.lower()
        existing = self._tools.get(key)
        if existing is not None and existing.function is not resolved.function:
            raise ToolDefinitionError(f"two different tools are named {resolved.name!r}")
        if resolved.check is not None:
            resolved.check()  # raises ToolConfigError before the model ever calls it
        self._tools[key] = resolved
        return resolved

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._tools

    def __iter__(self) -> Iterator[Tool]:
        return iter(self._tools.values())

    def __len__(self) -> int:
        return len(self._tools)

    @property
    def names(self) -> list[str]:
        return [t.name for t in self._tools.values()]

    def prepare(
        self, name: str, arguments: str | Mapping[str, Any], policy: CallPolicy | None = None
    ) -> tuple[Tool, dict[str, Any]] | CallOutcome:
        """Look up, validate and authorise a call; a CallOutcome means it must not run."""
        found = self.get(name)
        if found is None:
            known = ", ".join(self.names) or "none"
            return _failure(f"unknown tool {name!r} (available: {known})", None)
        try:
            bound = found.bind(arguments)
        except pydantic.ValidationError as exc:
            return _failure(f"invalid arguments: {_short_validation_error(exc)}", None)
        except ArgumentSyntaxError as exc:
            return _failure(f"invalid arguments: {exc}", None)
        except Exception as exc:  # anything else binding raised is still the model's text
            return _failure(f"invalid arguments: {_describe(exc)}", None)
        if policy is not None:
            refusal = policy.refusal(found, bound)
            if refusal is not None:
                return _failure(refusal, bound)
        return found, bound

    def call(
        self,
        name: str,
        arguments: str | Mapping[str, Any],
        *,
        policy: CallPolicy | None = None,
        context: ToolContext | None = None,
    ) -> CallOutcome:
        """Run one call from synchronous code. Never raises for the tool's own failures."""
        prepared = self.prepare(name, arguments, policy)
        if isinstance(prepared, CallOutcome):
            return prepared
        return execute(*prepared, context)

    async def acall(
        self,
        name: str,
        arguments: str | Mapping[str, Any],
        *,
        policy: CallPolicy | None = None,
        context: ToolContext | None = None,
    ) -> CallOutcome:
        """Run one call on the running event loop; sync tools go to a worker thread."""
        prepared = self.prepare(name, arguments, policy)
        if isinstance(prepared, CallOutcome):
            return prepared
        return await aexecute(*prepared, context)


def resolve_tool(item: Any) -> Tool:
    """A Tool from a Tool, a decorated or plain function, or a reference to one.

    References: the name of an installed tool (``"calculator"``), ``"module:function"``,
    ``"path/to/file.py:function"`` or ``"mcp:<command or URL>#ToolName"`` (see ``toolrun.mcp``).
    """
    if isinstance(item, Tool):
        return item
    if isinstance(item, str):
        if item.startswith("mcp:"):
            from .mcp import reference_tool  # lazy: the mcp SDK is an optional extra

            return reference_tool(item)
        if ":" in item:
            return resolve_tool(_import_reference(item))
        found = available_tools().get(item.lower())
        if found is None:
            known = ", ".join(sorted({t.name for t in available_tools().values()}))
            raise ToolNotFoundError(
                f"no tool named {item!r}; available: {known or 'none'} "
                "(or give module:function or path/to/file.py:function)"
            )
        return found
    attached = getattr(item, TOOL_ATTRIBUTE, None)
    if isinstance(attached, Tool):
        return attached
    if callable(item):
        return Tool.from_function(item)
    raise ToolDefinitionError(f"cannot use {item!r} as a tool")


def _import_reference(reference: str) -> Any:
    """The object a ``module:attribute`` or ``file.py:attribute`` reference names."""
    where, _, attribute = reference.rpartition(":")
    if not where or not attribute.isidentifier():
        raise ToolNotFoundError(f"{reference!r} is not module:function or file.py:function")
    try:
        if where.endswith(".py"):
            path = Path(where).expanduser()
            if not path.is_file():
                raise ToolNotFoundError(f"{reference!r}: no file {str(path)!r}")
            spec = importlib.util.spec_from_file_location(f"_toolrun_ref_{path.stem}", path)
            if spec is None or spec.loader is None:
                raise ToolNotFoundError(f"{reference!r}: cannot import {str(path)!r}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(where)
    except ToolNotFoundError:
        raise
    except ToolDefinitionError:
        raise
    except Exception as exc:
        raise ToolNotFoundError(
            f"{reference!r}: importing {where!r} failed: {type(exc).__name__}: {exc}"
        ) from exc
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise ToolNotFoundError(f"{reference!r}: {where!r} has no {attribute!r}") from None


_available: dict[str, Tool] | None = None
_available_lock = threading.Lock()


def available_tools(refresh: bool = False) -> dict[str, Tool]:
    """Every tool installed through the ``toolrun.tools`` entry-point group, by lower-case name.

    Built-in tools arrive the same way as third-party ones: the package declares them in its
    entry points. An entry point that fails to load is skipped with a warning, so one broken
    plugin cannot take the others down.
    """
    global _available
    with _available_lock:
        if _available is None or refresh:
            found: dict[str, Tool] = {}
            for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
                try:
                    loaded = resolve_tool(entry.load())
                except Exception as exc:
                    warnings.warn(
                        f"toolrun: skipping tool entry point {entry.name!r}: {exc}", stacklevel=2
                    )
                    continue
                found.setdefault(loaded.name.lower(), loaded)
                found.setdefault(entry.name.lower(), loaded)
            _available = found
        return _available


def _short_validation_error(exc: pydantic.ValidationError) -> str:
    parts = []
    for error in exc.errors()[:3]:
        where = ".".join(str(p) for p in error["loc"]) or "arguments"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


def _failure(message: str, arguments: dict[str, Any] | None) -> CallOutcome:
    return CallOutcome(None, valid_text(message), arguments, 0.0)


def _describe(exc: BaseException) -> str:
    try:
        text = str(exc)
    except Exception:
        text = ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
