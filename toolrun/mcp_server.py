"""toolrun's tools for any MCP client: ``toolrun mcp-serve``.

    toolrun mcp-serve --tools calculator,calendar                      # stdio (desktop apps, IDEs)
    toolrun mcp-serve --tools calculator,my_pkg.tools:lookup --transport http --port 8000
                                                                      # streamable HTTP on /mcp

Any registry tool can be served: built-ins, entry points, ``module:function`` and
``file.py:function``. Calls run through the registry exactly as they do inside a generation:
arguments validated by the tool's own model, its deadline, its errors as text (an MCP error
result, ``isError``), so an MCP client sees what the model would read.

Built on the SDK's low-level ``Server`` rather than ``MCPServer``: ``MCPServer`` derives the
schema from each Python signature and runs the function itself, which would bypass toolrun's
validation, deadlines, error text and ``ToolContext``. ``build_server(tools)`` returns the
server for apps and tests. Needs the extra: ``pip install 'toolrun[mcp]'``.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .errors import ToolConfigError
from .registry import ToolContext, ToolRegistry

if TYPE_CHECKING:
    from mcp.server.lowlevel import Server

__all__ = ["DEFAULT_PATH", "DEFAULT_PORT", "build_server", "register", "serve"]

DEFAULT_PORT = 8000
DEFAULT_PATH = "/mcp"
_call_ids = itertools.count()


def build_server(tools: Iterable[Any] | ToolRegistry, *, name: str = "toolrun") -> Server[Any]:
    """An MCP server (the SDK's low-level ``Server``) listing and running ``tools``."""
    try:
        import mcp_types as types
        from mcp.server.lowlevel import Server
    except ImportError as exc:
        raise ToolConfigError(
            f"mcp-serve needs the mcp extra: pip install 'toolrun[mcp]' ({exc})"
        ) from None
    from . import __version__, tracing

    registry = tools if isinstance(tools, ToolRegistry) else ToolRegistry(tools)
    listing = [
        types.Tool(
            name=found.name,
            description=found.description or None,
            input_schema=found.json_schema()["function"]["parameters"],
        )
        for found in registry
    ]
    schemas = {t.name: t.input_schema for t in listing}

    async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(tools=listing)

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        found = registry.get(params.name)
        context = ToolContext(tool_name=found.name if found else params.name)
        arguments = params.arguments or {}
        with tracing.tool_call(params.name, f"mcp_{next(_call_ids)}", arguments) as span:
            outcome = await registry.acall(params.name, arguments, context=context)
            span.record(outcome)
        failed = outcome.error is not None
        text = outcome.error if outcome.error is not None else outcome.result or ""
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=text)], is_error=failed
        )

    return Server(
        name,
        version=__version__,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        get_tool_input_schema=schemas.get,
    )


def serve(
    tools: Iterable[Any] | ToolRegistry,
    *,
    transport: str = "stdio",
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    path: str = DEFAULT_PATH,
) -> None:
    """Serve ``tools`` until interrupted: over stdio, or streamable HTTP at host:port/path."""
    server = build_server(tools)
    if transport == "stdio":
        import anyio
        from mcp.server.stdio import stdio_server

        async def run() -> None:
            async with stdio_server() as (read_stream, write_stream):
                await server.run(read_stream, write_stream, server.create_initialization_options())

        anyio.run(run)
    elif transport == "http":
        import uvicorn

        app = server.streamable_http_app(streamable_http_path=path, host=host)
        uvicorn.run(app, host=host, port=port, log_level="warning")
    else:
        raise ToolConfigError(f"unknown transport {transport!r}: use stdio or http")


def register(subparsers: Any) -> None:
    """Add ``toolrun mcp-serve`` to the ``toolrun`` command."""
    from . import tracing

    p = subparsers.add_parser(
        "mcp-serve",
        help="serve tools to MCP clients (stdio or streamable HTTP)",
        description="Expose toolrun tools (built-ins, entry points, module:function, "
        "file.py:function) to any Model Context Protocol client.",
    )
    p.add_argument(
        "--tools",
        required=True,
        help="comma-separated tool names or references, e.g. calculator,my_pkg.tools:lookup",
    )
    p.add_argument("--transport", choices=["stdio", "http"], default="stdio")
    p.add_argument("--host", default="127.0.0.1", help="HTTP address (default: %(default)s)")
    p.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="HTTP port (default: %(default)s)"
    )
    p.add_argument("--path", default=DEFAULT_PATH, help="HTTP endpoint (default: %(default)s)")
    tracing.add_cli_argument(p)
    p.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    from . import tracing

    if args.otel:
        where = tracing.setup_from_cli(service_name="toolrun-mcp")
        print(f"toolrun mcp-serve: traces go to {where}", file=sys.stderr)
    names = [n.strip() for n in args.tools.split(",") if n.strip()]
    if not names:
        raise ToolConfigError("--tools needs at least one tool")
    registry = ToolRegistry(names)
    if args.transport == "http":
        url = f"http://{args.host}:{args.port}{args.path}"
        print(f"toolrun mcp-serve: {', '.join(registry.names)} at {url}", file=sys.stderr)
    serve(registry, transport=args.transport, host=args.host, port=args.port, path=args.path)
    return 0
