"""An MCP server written with the ``mcp`` SDK, for the client bridge's tests.

    python tests/servers/mcp_demo.py [--http PORT] [--many N]

Over stdio by default; ``--http PORT`` serves streamable HTTP on 127.0.0.1:PORT/mcp. Its tools
cover what a bridge must handle: typed arguments, a raw-text argument, structured output, a
tool that raises, one that never answers, one that kills the server, and ``--many N`` extra
tools (a long listing).
"""

from __future__ import annotations

import argparse
import ast
import logging
import operator
import os

import anyio
from mcp.server.mcpserver import MCPServer

server = MCPServer("toolrun-test")

_OPERATORS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}


@server.tool(name="Calculator")
def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression with + - * /."""

    def walk(node: ast.expr) -> float:
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            return _OPERATORS[type(node.op)](walk(node.left), walk(node.right))
        raise ValueError(f"not arithmetic: {expression!r}")

    value = walk(ast.parse(expression, mode="eval").body)
    return str(int(value)) if value == int(value) else f"{value:.2f}"


@server.tool()
def add(a: int, b: int = 1) -> int:
    """Add two integers."""
    return a + b


@server.tool()
def weather(city: str, days: int = 1) -> dict[str, object]:
    """A forecast, as structured content."""
    return {"city": city, "days": days, "sky": "clear"}


@server.tool(name="get-time")
def get_time() -> str:
    """A tool whose name is not an identifier."""
    return "12:00"


@server.tool()
def fail(message: str) -> str:
    """Always raises."""
    raise RuntimeError(message)


@server.tool()
async def hang(seconds: float = 3600) -> str:
    """Never answers (within any deadline a test uses)."""
    await anyio.sleep(seconds)
    return "woke up"


@server.tool()
def crash() -> str:
    """Kills the server process mid-call."""
    os._exit(3)


@server.tool()
def pid() -> int:
    """The server's process id, to tell a reconnected server from the first."""
    return os.getpid()


def _add_many(count: int) -> None:
    for i in range(count):

        def echo(text: str, i: int = i) -> str:
            return f"{i}:{text}"

        server.add_tool(echo, name=f"echo_{i:03d}", description=f"Echo number {i}.")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--http", type=int, default=None, metavar="PORT")
    parser.add_argument("--many", type=int, default=0)
    args = parser.parse_args()
    _add_many(args.many)
    logging.getLogger("mcp").setLevel(logging.CRITICAL)  # "fail" would log its traceback
    if args.http is None:
        server.run("stdio")
    else:
        import uvicorn

        app = server.streamable_http_app(host="127.0.0.1")
        uvicorn.run(app, host="127.0.0.1", port=args.http, log_level="error")


if __name__ == "__main__":
    main()
