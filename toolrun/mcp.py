"""Tools from any MCP server: every tool a Model Context Protocol server lists becomes a registry
tool, usable wherever a tool is (``generate``, ``chat``, the batch functions, the CLI, the server).

    tools = toolrun.mcp.tools("python my_server.py")          # stdio: a command to launch
    tools = toolrun.mcp.tools("http://127.0.0.1:8000/mcp")    # streamable HTTP: a URL
    toolrun.generate(prompt, tools=[*tools, "calculator"])
    toolrun.generate(prompt, tools=["mcp:python my_server.py"])   # the same, as a tool reference

Names, descriptions and JSON schemas come from the server; arguments are validated against the
schema before the call (a bracket call's positional arguments follow the schema's property
order); the result's text, structured content or error becomes result text.

One session per server, opened on first use and kept open on an event loop in a daemon thread;
calls from any thread or event loop are forwarded to it, so concurrent calls share it. A call
that outlives its deadline or meets a broken transport closes the session (a stdio server is
stopped) and the next call opens a new one: a dead or hung server costs one error, not a stuck
generation. Needs the extra: ``pip install 'toolrun[mcp]'``.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import re
import shlex
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import ToolConfigError, ToolError, ToolNotFoundError
from .syntax import ArgumentSyntaxError
from .tooldef import DEFAULT_MAX_RESULT_CHARS, DEFAULT_TIMEOUT_S, Tool

if TYPE_CHECKING:
    from mcp import Client

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT_S",
    "REFERENCE_PREFIX",
    "MCPTool",
    "atools",
    "disconnect",
    "reference_tool",
    "reference_tools",
    "tools",
]

REFERENCE_PREFIX = "mcp:"
DEFAULT_CONNECT_TIMEOUT_S = 30.0
_INSTALL_HINT = "MCP tools need the mcp extra: pip install 'toolrun[mcp]'"
_NOT_IDENTIFIER = re.compile(r"[^A-Za-z0-9_]")


@dataclass(frozen=True)
class MCPTool(Tool):
    """A tool an MCP server lists. Its JSON schema, not a Python signature, defines its arguments.

    ``remote_name`` is the name on the server (``name`` is the same made an identifier, as the
    bracket syntax needs: ``get-time`` is called ``get_time``); ``server`` names the server.
    """

    input_schema: dict[str, Any] = field(default_factory=dict)
    remote_name: str = ""
    server: str = ""
    _validator: Any = field(default=None, repr=False, compare=False)

    @property
    def parameters(self) -> list[str]:
        return list(self.input_schema.get("properties") or {})

    @property
    def raw_text(self) -> bool:
        """One string parameter: a bracket call's text between the parentheses is its value."""
        properties = self.input_schema.get("properties") or {}
        return len(properties) == 1 and next(iter(properties.values())).get("type") == "string"

    @property
    def signature(self) -> str:
        properties = self.input_schema.get("properties") or {}
        required = set(self.input_schema.get("required") or ())
        parts = []
        for name, schema in properties.items():
            kind = schema.get("type", "any")
            kind = "|".join(kind) if isinstance(kind, list) else kind
            default = (
                "" if name in required or "default" not in schema else f" = {schema['default']!r}"
            )
            parts.append(f"{name}: {kind}{default}")
        return f"{self.name}({', '.join(parts)})"

    def json_schema(self) -> dict[str, Any]:
        """The OpenAI function schema, with the server's own JSON schema as the parameters."""
        parameters = dict(self.input_schema) or {"type": "object"}
        parameters.setdefault("properties", {})
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": parameters,
            },
        }

    def bind(self, arguments: str | Mapping[str, Any]) -> dict[str, Any]:
        """Arguments checked against the server's schema; raises ArgumentSyntaxError."""
        if isinstance(arguments, str):
            values = self._from_text(arguments)
        elif isinstance(arguments, Mapping):
            values = dict(arguments)
        else:
            raise ArgumentSyntaxError(
                f"arguments must be an object, got {type(arguments).__name__}"
            )
        if self._validator is not None:
            import jsonschema

            try:
                error = jsonschema.exceptions.best_match(self._validator.iter_errors(values))
            except jsonschema.exceptions.SchemaError:
                error = None  # the server's schema is broken: let the server judge
            if error is not None:
                where = ".".join(str(p) for p in error.absolute_path) or "arguments"
                raise ArgumentSyntaxError(f"{where}: {error.message}")
        return values

    def _from_text(self, text: str) -> dict[str, Any]:
        """A bracket call's arguments: positional ones in the schema's property order."""
        kwargs = self.keywords_from_text(text)
        if self.raw_text:
            return kwargs
        properties = self.input_schema.get("properties") or {}
        return {key: _coerce(value, properties.get(key) or {}) for key, value in kwargs.items()}


def _coerce(value: Any, schema: Mapping[str, Any]) -> Any:
    """Models write ``Weather(Paris, 3.0)``: a number where text is wanted, 3.0 for 3."""
    kind = schema.get("type")
    if kind == "string" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if kind == "integer" and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def tools(
    server: str | Sequence[str],
    *,
    timeout: float | None = DEFAULT_TIMEOUT_S,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S,
    max_result_chars: int = DEFAULT_MAX_RESULT_CHARS,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    prefix: str = "",
) -> list[MCPTool]:
    """Every tool ``server`` lists, as registry tools.

    ``server``: a URL (``http://host:port/mcp``, streamable HTTP) or a command that starts a
    stdio server (``"python server.py"`` split like a shell would, or a list of arguments).
    ``timeout``: each call's deadline in seconds. ``connect_timeout`` bounds starting the server
    and listing its tools. ``env`` adds environment variables for a stdio server (the SDK passes
    only a safe few of this process's own); ``cwd`` is its working folder. ``prefix`` goes
    before every tool's name (``prefix="github_"``: ``github_search``), so two servers that list
    the same names can share a registry; calls still reach the server under its own names.

    Raises ToolConfigError when the server cannot be reached or listed in time. The session is
    shared: asking again for the same server reuses it.
    """
    connection = _connection(server, env=env, cwd=cwd, connect_timeout=connect_timeout)
    future = asyncio.run_coroutine_threadsafe(connection.list_tools(), _loop())
    try:
        listed = future.result(2 * connect_timeout + 5.0)  # starting and listing are bounded
    except TimeoutError:
        future.cancel()
        raise ToolConfigError(
            f"MCP server {connection.label} did not list its tools within {connect_timeout:g} s"
        ) from None
    return [connection.make_tool(t, timeout, max_result_chars, prefix) for t in listed]


async def atools(
    server: str | Sequence[str],
    *,
    timeout: float | None = DEFAULT_TIMEOUT_S,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S,
    max_result_chars: int = DEFAULT_MAX_RESULT_CHARS,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    prefix: str = "",
) -> list[MCPTool]:
    """``tools()`` for async code: waits without blocking the running event loop."""
    connection = _connection(server, env=env, cwd=cwd, connect_timeout=connect_timeout)
    future = asyncio.run_coroutine_threadsafe(connection.list_tools(), _loop())
    listed = await asyncio.wrap_future(future)
    return [connection.make_tool(t, timeout, max_result_chars, prefix) for t in listed]


def reference_tools(reference: str) -> list[MCPTool]:
    """The tools a reference ``mcp:<command or URL>`` names: all the server lists, or with
    ``#Name`` at the end only that one (``mcp:python server.py#add``)."""
    server, _, wanted = reference.removeprefix(REFERENCE_PREFIX).strip().partition("#")
    if not server.strip():
        raise ToolNotFoundError(f"{reference!r}: give a command or URL after {REFERENCE_PREFIX!r}")
    found = tools(server.strip())
    if not wanted:
        return found
    chosen = [t for t in found if wanted.lower() in (t.name.lower(), t.remote_name.lower())]
    if not chosen:
        names = ", ".join(t.name for t in found) or "none"
        raise ToolNotFoundError(f"{reference!r}: the server has no tool {wanted!r} ({names})")
    return chosen


def reference_tool(reference: str) -> MCPTool:
    """The one tool ``mcp:<command or URL>[#Name]`` names (``resolve_tool`` wants one)."""
    found = reference_tools(reference)
    if len(found) != 1:
        names = ", ".join(t.name for t in found)
        raise ToolNotFoundError(
            f"{reference!r} lists {len(found)} tools ({names}): pick one with #Name, or pass "
            "the reference to a ToolRegistry (or tools=[...]), which takes them all"
        )
    return found[0]


def disconnect() -> None:
    """Close every MCP session (stopping stdio servers). A later call reconnects."""
    if _state.loop is None:
        return
    connections = list(_state.connections.values())
    future = asyncio.run_coroutine_threadsafe(_close_all(connections), _state.loop)
    try:
        future.result(10.0)
    except Exception:
        future.cancel()


async def _close_all(connections: list[_Connection]) -> None:
    await asyncio.gather(*(c.close() for c in connections), return_exceptions=True)


@dataclass
class _Session:
    """One open session: the SDK client, and the task holding it open until ``closing`` is set.
    ``retired``: closed by us (a deadline passed), not by the server."""

    client: Client
    closing: asyncio.Event
    holder: asyncio.Task[None]
    retired: bool = False

    @property
    def usable(self) -> bool:
        return not self.retired and not self.holder.done()

    def retire(self) -> None:
        self.retired = True
        self.closing.set()


class _Connection:
    """One server: how to reach it, and the session to it, opened on demand and reopened after a
    failure. Lives on the MCP event loop: every coroutine here runs there."""

    def __init__(
        self,
        target: str | list[str],
        env: Mapping[str, str] | None,
        cwd: str | None,
        connect_timeout: float,
    ) -> None:
        self.target = target
        self.env = dict(env) if env else None
        self.cwd = cwd
        self.connect_timeout = connect_timeout
        self.label = target if isinstance(target, str) else shlex.join(target)
        self._session: _Session | None = None
        self._opening: asyncio.Future[_Session] | None = None
        self._listing: list[Any] | None = None
        self._listed_by: _Session | None = None

    async def session(self) -> _Session:
        """The open session, opening one (again) if there is none.

        Opening runs as a task of its own that callers wait on: a call whose deadline passes
        while a server starts does not abort the start, so the next call finds it ready.
        """
        current = self._session
        if current is not None and current.usable:
            return current
        if self._opening is None or self._opening.done():
            self._opening = asyncio.ensure_future(self._open())
            self._opening.add_done_callback(_retrieve)
        return await asyncio.shield(self._opening)

    async def _open(self) -> _Session:
        ready: asyncio.Future[Client] = asyncio.get_running_loop().create_future()
        closing = asyncio.Event()
        holder = asyncio.create_task(self._hold(ready, closing))
        try:
            client = await asyncio.wait_for(asyncio.shield(ready), self.connect_timeout)
        except (TimeoutError, asyncio.TimeoutError):
            closing.set()
            holder.cancel()
            raise ToolConfigError(
                f"MCP server {self.label} did not start within {self.connect_timeout:g} s"
            ) from None
        except Exception as exc:
            raise ToolConfigError(
                f"cannot connect to MCP server {self.label}: {_describe(exc)}"
            ) from exc
        self._session = _Session(client, closing, holder)
        return self._session

    async def _hold(self, ready: asyncio.Future[Client], closing: asyncio.Event) -> None:
        """Keep one session open until asked to close or the transport fails.

        The SDK's client must be entered and left in the same task (anyio scopes), so one task
        per session holds it; calls from other tasks use it meanwhile.
        """
        try:
            async with self._client_for_transport() as client:
                ready.set_result(client)
                await closing.wait()
        except BaseException as exc:  # the failure is reported through ready or the next call
            if not ready.done():
                if isinstance(exc, asyncio.CancelledError):
                    ready.cancel()
                else:
                    ready.set_exception(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise

    def _client_for_transport(self) -> Client:
        from mcp import Client, StdioServerParameters
        from mcp.client.stdio import stdio_client

        if isinstance(self.target, str):
            return Client(self.target)
        command, *args = self.target
        parameters = StdioServerParameters(command=command, args=args, env=self.env, cwd=self.cwd)
        return Client(stdio_client(parameters, errlog=_errlog()))

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is None:
            return
        session.retire()
        try:
            await asyncio.wait_for(session.holder, 8.0)
        except BaseException:  # closing is best effort
            session.holder.cancel()

    async def list_tools(self) -> list[Any]:
        """Every tool the server lists (following pagination), remembered for references."""
        session = await self.session()
        if self._listing is not None and self._listed_by is session:
            return self._listing
        try:
            listed = await asyncio.wait_for(self._list_pages(session), self.connect_timeout)
        except (TimeoutError, asyncio.TimeoutError):
            session.retire()
            raise ToolConfigError(
                f"MCP server {self.label} did not list its tools within {self.connect_timeout:g} s"
            ) from None
        except Exception as exc:
            session.retire()
            raise ToolConfigError(
                f"MCP server {self.label} cannot list its tools: {_describe(exc)}"
            ) from exc
        self._listing, self._listed_by = listed, session
        return listed

    @staticmethod
    async def _list_pages(session: _Session) -> list[Any]:
        listed: list[Any] = []
        cursor: str | None = None
        for _ in range(1000):  # a paginator that never ends cannot hang the listing
            page = await session.client.list_tools(cursor=cursor)
            listed.extend(page.tools)
            cursor = page.next_cursor
            if not cursor:
                break
        return listed

    async def call(self, name: str, arguments: dict[str, Any]) -> str:
        """Call a tool; its error, or a failed transport, raises ToolError with the text."""
        from mcp import MCPError
        from mcp_types import CONNECTION_CLOSED

        for attempt in range(2):
            try:
                session = await self.session()
            except ToolConfigError as exc:
                raise ToolError(str(exc)) from None
            try:
                result = await session.client.call_tool(name, arguments)
            except asyncio.CancelledError:
                session.retire()  # past the deadline: a hung server must not hold the next call
                raise
            except MCPError as exc:
                if exc.code != CONNECTION_CLOSED:
                    raise ToolError(f"MCP error: {exc}") from exc
                if session.retired and attempt == 0:
                    continue  # we closed it under this call (another call's deadline): retry
                session.retire()
                raise ToolError(f"MCP server {self.label} closed the connection") from exc
            except Exception as exc:
                session.retire()
                raise ToolError(f"MCP server {self.label} failed: {_describe(exc)}") from exc
            return _result_text(result)
        raise AssertionError("unreachable")  # pragma: no cover

    def make_tool(
        self, listed: Any, timeout: float | None, max_result_chars: int, prefix: str = ""
    ) -> MCPTool:
        import jsonschema

        schema = dict(listed.input_schema or {"type": "object"})
        try:
            validator = jsonschema.validators.validator_for(schema)(schema)
        except Exception:  # an unusable schema is left to the server to enforce
            validator = None
        remote_name = listed.name
        connection = self

        async def call_remote(**arguments: Any) -> str:
            # Forwarded to the MCP loop whichever loop or thread runs the call; cancelling the
            # wait (the registry's deadline) cancels the call there, which resets the session.
            future = asyncio.run_coroutine_threadsafe(
                connection.call(remote_name, arguments), _loop()
            )
            return await asyncio.wrap_future(future)

        name = _identifier(prefix + remote_name)
        call_remote.__name__ = name
        return MCPTool(
            name=name,
            description=(listed.description or listed.title or "").strip(),
            function=call_remote,
            arguments_model=_NO_MODEL,
            parameter_help={
                key: str(value.get("description", ""))
                for key, value in (schema.get("properties") or {}).items()
                if isinstance(value, Mapping) and value.get("description")
            },
            timeout=timeout,
            max_result_chars=max_result_chars,
            input_schema=schema,
            remote_name=remote_name,
            server=self.label,
            _validator=validator,
        )


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Mark a background task's failure as seen: the callers that waited got it already."""
    if not task.cancelled():
        task.exception()


def _result_text(result: Any) -> str:
    """What the model reads: the text content (compact when it is JSON), else the structured
    content as JSON; other content is named. An error result raises ToolError with its text."""
    parts = []
    for block in result.content:
        kind = getattr(block, "type", "")
        if kind == "text":
            parts.append(block.text)
        elif kind in ("image", "audio"):
            parts.append(f"<{kind} {block.mime_type}>")
        elif kind == "resource_link":
            parts.append(str(block.uri))
        elif kind == "resource":
            text = getattr(block.resource, "text", None)
            parts.append(text if text is not None else f"<resource {block.resource.uri}>")
    text = "\n".join(parts)
    if len(parts) == 1:
        try:
            parsed = json.loads(text)
        except ValueError:
            pass
        else:
            if isinstance(parsed, (dict, list)):
                text = json.dumps(parsed, ensure_ascii=False)
    if not parts and result.structured_content is not None:
        text = json.dumps(result.structured_content, ensure_ascii=False)
    if result.is_error:
        raise ToolError(text or "the MCP tool reported an error")
    return text


def _identifier(name: str) -> str:
    """An MCP name made a bracket-syntax name: ``get-time`` becomes ``get_time``."""
    cleaned = _NOT_IDENTIFIER.sub("_", name) or "_"
    return f"_{cleaned}" if cleaned[0].isdigit() else cleaned


def _describe(exc: BaseException) -> str:
    grouped = getattr(exc, "exceptions", None)  # an ExceptionGroup from the SDK's task groups
    if isinstance(grouped, tuple) and len(grouped) == 1:
        return _describe(grouped[0])
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _errlog() -> Any:
    """Where a stdio server's stderr goes: ours, if it is a real file."""
    for stream in (sys.stderr, sys.__stderr__):
        try:
            if stream is not None:
                stream.fileno()
                return stream
        except (AttributeError, OSError, ValueError):
            continue
    import subprocess

    return subprocess.DEVNULL


class _NoArguments:
    """Stands in for ``Tool.arguments_model``: an MCP tool's arguments are its JSON schema."""

    model_fields: dict[str, Any] = {}  # noqa: RUF012


_NO_MODEL: Any = _NoArguments


@dataclass
class _State:
    loop: asyncio.AbstractEventLoop | None = None
    connections: dict[tuple[Any, ...], _Connection] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


_state = _State()


def _loop() -> asyncio.AbstractEventLoop:
    """The event loop every MCP session lives on, in a daemon thread."""
    with _state.lock:
        if _state.loop is None:
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="toolrun-mcp", daemon=True).start()
            _state.loop = loop
            atexit.register(disconnect)
        return _state.loop


def _connection(
    server: str | Sequence[str],
    *,
    env: Mapping[str, str] | None,
    cwd: str | None,
    connect_timeout: float,
) -> _Connection:
    try:
        import jsonschema  # noqa: F401
        import mcp  # noqa: F401
    except ImportError as exc:
        raise ToolConfigError(f"{_INSTALL_HINT} ({exc})") from None
    target: str | list[str]
    if isinstance(server, str):
        text = server.strip()
        target = text if re.match(r"https?://", text) else shlex.split(text)
    else:
        target = [str(part) for part in server]
    if not target:
        raise ToolConfigError("an MCP server needs a command or a URL")
    key = (
        target if isinstance(target, str) else tuple(target),
        tuple(sorted((env or {}).items())),
        cwd,
    )
    with _state.lock:
        found = _state.connections.get(key)
        if found is None:
            found = _Connection(target, env, cwd, connect_timeout)
            _state.connections[key] = found
        return found
