"""Tools: typed objects built from functions, the registry that resolves them, and invocation.

A tool is a plain function with type hints. ``@tool`` (bare, or with options) reads its name, its
docstring and its signature, builds a pydantic model of the arguments, attaches the resulting
``Tool`` to the function and returns the function unchanged. Definition problems raise one
ToolDefinitionError at decoration time, listing all of them.

At call time nothing raises: an unknown tool, invalid arguments, an exception, a timeout or a
refusal each become a ``CallOutcome`` whose error text the model reads.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import importlib.metadata
import inspect
import re
import threading
import time
import typing
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar, overload

import pydantic

from .errors import ToolDefinitionError, ToolError, ToolNotFoundError
from .syntax import ArgumentSyntaxError, parse_arguments, render_value

__all__ = [
    "ENTRY_POINT_GROUP",
    "CallOutcome",
    "CallPolicy",
    "Tool",
    "ToolContext",
    "ToolRegistry",
    "available_tools",
    "tool",
]

ENTRY_POINT_GROUP = "toolrun.tools"
DEFAULT_TIMEOUT_S = 10.0
DEFAULT_MAX_RESULT_CHARS = 300
_TOOL_ATTRIBUTE = "__toolrun_tool__"
_NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class ToolContext:
    """Given to a tool that has a parameter annotated ``ToolContext``; the model never sees it.

    ``model`` is the model that is generating (a tool such as QA can ask it a question), or None
    when the tool runs outside a generation.
    """

    model: Any = None
    tool_name: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Tool:
    """A callable the model can use, with its validated signature. Build one with ``@tool``."""

    name: str
    description: str
    function: Callable[..., Any]
    arguments_model: type[pydantic.BaseModel]
    parameter_help: dict[str, str]
    timeout: float | None = DEFAULT_TIMEOUT_S
    max_result_chars: int = DEFAULT_MAX_RESULT_CHARS
    requires_approval: bool = False
    context_parameter: str | None = None
    check: Callable[[], None] | None = None

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.function)

    @property
    def parameters(self) -> list[str]:
        """The parameters the model fills, in order."""
        return list(self.arguments_model.model_fields)

    @property
    def raw_text(self) -> bool:
        """A tool with one ``str`` parameter receives the text between the parentheses as is."""
        fields = self.arguments_model.model_fields
        return len(fields) == 1 and next(iter(fields.values())).annotation is str

    @property
    def signature(self) -> str:
        """``Name(param: type, other: type = default)``, as ``toolrun tools`` lists it."""
        parts = []
        for name, info in self.arguments_model.model_fields.items():
            annotation = _type_name(info.annotation)
            default = "" if info.is_required() else f" = {info.default!r}"
            parts.append(f"{name}: {annotation}{default}")
        return f"{self.name}({', '.join(parts)})"

    @classmethod
    def from_function(
        cls,
        function: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT_S,
        max_result_chars: int = DEFAULT_MAX_RESULT_CHARS,
        requires_approval: bool = False,
        check: Callable[[], None] | None = None,
    ) -> Tool:
        """Build a Tool from a typed function, raising ToolDefinitionError with every problem."""
        problems: list[str] = []
        if not callable(function):
            raise ToolDefinitionError(f"a tool must be a function, got {function!r}")
        label = getattr(function, "__qualname__", repr(function))
        tool_name = name if name is not None else getattr(function, "__name__", "")
        if tool_name == "<lambda>":
            problems.append("a lambda has no name: pass name=... to @tool")
        elif not _NAME_PATTERN.match(tool_name or ""):
            problems.append(f"tool name {tool_name!r} must be an identifier (letters, digits, _)")
        if timeout is not None and not timeout > 0:
            problems.append(f"timeout must be a positive number of seconds, got {timeout!r}")
        if max_result_chars < 1:
            problems.append(f"max_result_chars must be at least 1, got {max_result_chars!r}")

        doc_description, parameter_help = _parse_docstring(inspect.getdoc(function) or "")
        try:
            hints = typing.get_type_hints(function)
        except Exception as exc:  # unresolvable forward references
            problems.append(f"cannot resolve type hints: {exc}")
            hints = {}
        fields: dict[str, Any] = {}
        context_parameter = None
        for parameter in inspect.signature(function).parameters.values():
            if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
                problems.append(
                    f"parameter {parameter.name!r}: *args and **kwargs are not supported"
                )
                continue
            annotation = hints.get(parameter.name, inspect.Parameter.empty)
            if annotation is inspect.Parameter.empty:
                problems.append(f"parameter {parameter.name!r} has no type hint")
                continue
            if annotation is ToolContext:
                context_parameter = parameter.name
                continue
            default = ... if parameter.default is inspect.Parameter.empty else parameter.default
            fields[parameter.name] = (
                annotation,
                pydantic.Field(default, description=parameter_help.get(parameter.name)),
            )
        arguments_model: type[pydantic.BaseModel] = pydantic.BaseModel
        if not problems:
            try:
                arguments_model = pydantic.create_model(
                    f"{tool_name}Arguments",
                    __config__=pydantic.ConfigDict(extra="forbid", arbitrary_types_allowed=False),
                    **fields,
                )
            except Exception as exc:  # pydantic cannot build a schema for some annotation
                problems.append(f"unsupported parameter types: {exc}")
        if problems:
            raise ToolDefinitionError(
                f"cannot make a tool of {label}:\n" + "\n".join(f"  - {p}" for p in problems)
            )
        return cls(
            name=tool_name,
            description=(description if description is not None else doc_description).strip(),
            function=function,
            arguments_model=arguments_model,
            parameter_help=parameter_help,
            timeout=timeout,
            max_result_chars=max_result_chars,
            requires_approval=requires_approval,
            context_parameter=context_parameter,
            check=check,
        )

    def bind(self, arguments: str) -> dict[str, Any]:
        """Parse and validate the text between the parentheses into keyword arguments.

        Raises ArgumentSyntaxError or pydantic.ValidationError; ``invoke`` turns both into text.
        """
        if self.raw_text:
            (only,) = self.parameters
            value: Any = arguments
            try:
                args, kwargs = parse_arguments(arguments)
                if not kwargs and len(args) == 1 and isinstance(args[0], str):
                    value = args[0]  # a single quoted literal is unquoted
            except ArgumentSyntaxError:
                pass
            return self.arguments_model.model_validate({only: value}).model_dump()
        args, kwargs = parse_arguments(arguments)
        names = self.parameters
        if len(args) > len(names):
            raise ArgumentSyntaxError(
                f"{self.name} takes {len(names)} argument(s), {len(args)} given"
            )
        for position, value in enumerate(args):
            if names[position] in kwargs:
                raise ArgumentSyntaxError(f"argument {names[position]!r} given twice")
            kwargs[names[position]] = value
        return self.arguments_model.model_validate(kwargs).model_dump()

    def _call_args(self, arguments: dict[str, Any], context: ToolContext | None) -> dict[str, Any]:
        if self.context_parameter is None:
            return arguments
        return {**arguments, self.context_parameter: context or ToolContext(tool_name=self.name)}


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
                return f"approval failed: {type(exc).__name__}: {exc}"
            if not approved:
                return f"call to {tool.name} was not approved"
        self.calls_made += 1
        return None


class ToolRegistry:
    """The tools one generation may use, looked up by name without regard to case."""

    def __init__(self, tools: Iterable[Any] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        for item in tools:
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
        self, name: str, arguments: str, policy: CallPolicy | None = None
    ) -> tuple[Tool, dict[str, Any]] | CallOutcome:
        """Look up, validate and authorise a call; a CallOutcome means it must not run."""
        found = self.get(name)
        if found is None:
            known = ", ".join(self.names) or "none"
            return _failure(f"unknown tool {name!r} (available: {known})", None, 0.0)
        try:
            bound = found.bind(arguments)
        except ArgumentSyntaxError as exc:
            return _failure(f"invalid arguments: {exc}", None, 0.0)
        except pydantic.ValidationError as exc:
            return _failure(f"invalid arguments: {_short_validation_error(exc)}", None, 0.0)
        if policy is not None:
            refusal = policy.refusal(found, bound)
            if refusal is not None:
                return _failure(refusal, bound, 0.0)
        return found, bound

    def call(
        self,
        name: str,
        arguments: str,
        *,
        policy: CallPolicy | None = None,
        context: ToolContext | None = None,
    ) -> CallOutcome:
        """Run one call from synchronous code. Never raises for the tool's own failures."""
        prepared = self.prepare(name, arguments, policy)
        if isinstance(prepared, CallOutcome):
            return prepared
        found, bound = prepared
        started = time.perf_counter()
        kwargs = found._call_args(bound, context)
        try:
            if found.is_async:
                future = asyncio.run_coroutine_threadsafe(
                    found.function(**kwargs), _background_loop()
                )
            else:
                future = _executor().submit(found.function, **kwargs)
            value = future.result(timeout=found.timeout)
        except (concurrent.futures.TimeoutError, TimeoutError):
            future.cancel()
            return _failure(f"timed out after {found.timeout:g} s", bound, started)
        except Exception as exc:
            return _failure(_describe(exc), bound, started)
        return _success(value, bound, started)

    async def acall(
        self,
        name: str,
        arguments: str,
        *,
        policy: CallPolicy | None = None,
        context: ToolContext | None = None,
    ) -> CallOutcome:
        """Run one call on the running event loop; sync tools go to a worker thread."""
        prepared = self.prepare(name, arguments, policy)
        if isinstance(prepared, CallOutcome):
            return prepared
        found, bound = prepared
        started = time.perf_counter()
        kwargs = found._call_args(bound, context)
        awaitable: Awaitable[Any]
        if found.is_async:
            awaitable = found.function(**kwargs)
        else:
            loop = asyncio.get_running_loop()
            awaitable = loop.run_in_executor(
                _executor(), functools.partial(found.function, **kwargs)
            )
        try:
            value = await asyncio.wait_for(awaitable, found.timeout)
        except (asyncio.TimeoutError, TimeoutError):
            return _failure(f"timed out after {found.timeout:g} s", bound, started)
        except Exception as exc:
            return _failure(_describe(exc), bound, started)
        return _success(value, bound, started)


@overload
def tool(function: F, /) -> F: ...
@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = DEFAULT_TIMEOUT_S,
    max_result_chars: int = DEFAULT_MAX_RESULT_CHARS,
    requires_approval: bool = False,
    check: Callable[[], None] | None = None,
) -> Callable[[F], F]: ...
def tool(
    function: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = DEFAULT_TIMEOUT_S,
    max_result_chars: int = DEFAULT_MAX_RESULT_CHARS,
    requires_approval: bool = False,
    check: Callable[[], None] | None = None,
) -> Any:
    """Make a function a tool. Use bare (``@tool``) or with options (``@tool(name="QA")``).

    The function is returned unchanged (it stays callable as before); the Tool built from it is
    attached and found by ``tools=[function]``. ``check`` runs when the tool is registered for a
    generation and raises ToolConfigError if configuration is missing.
    """

    def decorate(target: F) -> F:
        built = Tool.from_function(
            target,
            name=name,
            description=description,
            timeout=timeout,
            max_result_chars=max_result_chars,
            requires_approval=requires_approval,
            check=check,
        )
        setattr(target, _TOOL_ATTRIBUTE, built)
        return target

    if function is not None:
        return decorate(function)
    return decorate


def resolve_tool(item: Any) -> Tool:
    """A Tool from a Tool, a decorated or plain function, or the name of an available tool."""
    if isinstance(item, Tool):
        return item
    if isinstance(item, str):
        found = available_tools().get(item.lower())
        if found is None:
            known = ", ".join(sorted(t.name for t in set(available_tools().values())))
            raise ToolNotFoundError(f"no tool named {item!r}; available: {known or 'none'}")
        return found
    attached = getattr(item, _TOOL_ATTRIBUTE, None)
    if isinstance(attached, Tool):
        return attached
    if callable(item):
        return Tool.from_function(item)
    raise ToolDefinitionError(f"cannot use {item!r} as a tool")


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
                    import warnings

                    warnings.warn(
                        f"toolrun: skipping tool entry point {entry.name!r}: {exc}", stacklevel=2
                    )
                    continue
                found.setdefault(loaded.name.lower(), loaded)
                found.setdefault(entry.name.lower(), loaded)
            _available = found
        return _available


def _success(value: Any, arguments: dict[str, Any], started: float) -> CallOutcome:
    return CallOutcome(render_value(value), None, arguments, time.perf_counter() - started)


def _failure(message: str, arguments: dict[str, Any] | None, started: float) -> CallOutcome:
    latency = time.perf_counter() - started if started else 0.0
    return CallOutcome(None, message, arguments, latency)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ToolError):
        return str(exc)
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _short_validation_error(exc: pydantic.ValidationError) -> str:
    parts = []
    for error in exc.errors()[:3]:
        where = ".".join(str(p) for p in error["loc"]) or "arguments"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


_GOOGLE_SECTION = re.compile(
    r"^(Args|Arguments|Parameters|Returns|Raises|Yields|Examples?|Notes?):\s*$"
)


def _parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """Split a Google-style docstring into the description and per-argument help."""
    description: list[str] = []
    help_by_name: dict[str, str] = {}
    section = None
    current = None
    for line in doc.splitlines():
        header = _GOOGLE_SECTION.match(line.strip())
        if header and not line.startswith((" ", "\t")):
            section = header.group(1)
            current = None
            continue
        if section is None:
            description.append(line)
        elif section in ("Args", "Arguments", "Parameters") and line.strip():
            item = re.match(r"\s*(\*{0,2}\w+)\s*(\([^)]*\))?\s*:\s*(.*)", line)
            indent = len(line) - len(line.lstrip())
            if item and (current is None or indent <= 4):
                current = item.group(1).lstrip("*")
                help_by_name[current] = item.group(3).strip()
            elif current is not None:
                help_by_name[current] = f"{help_by_name[current]} {line.strip()}".strip()
    return "\n".join(description).strip(), help_by_name


_loop: asyncio.AbstractEventLoop | None = None
_pool: concurrent.futures.ThreadPoolExecutor | None = None
_runtime_lock = threading.Lock()


def _background_loop() -> asyncio.AbstractEventLoop:
    """An event loop in a daemon thread, so sync code can run async tools with a deadline."""
    global _loop
    with _runtime_lock:
        if _loop is None:
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, name="toolrun-tools", daemon=True).start()
        return _loop


def _executor() -> concurrent.futures.ThreadPoolExecutor:
    """Worker threads for sync tools: a tool past its deadline is abandoned, not killed."""
    global _pool
    with _runtime_lock:
        if _pool is None:
            _pool = concurrent.futures.ThreadPoolExecutor(16, thread_name_prefix="toolrun-tool")
        return _pool
