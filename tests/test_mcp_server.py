"""``toolrun mcp-serve`` driven by the ``mcp`` SDK's own client, over stdio and streamable HTTP:
built-in tools and a file.py:function tool listed and called, bad arguments, unknown tools."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("mcp")

from mcp import Client, StdioServerParameters

from toolrun.mcp_server import build_server

ROOT = Path(__file__).resolve().parent.parent
EXTRA = "tests/servers/mcp_extra_tools.py:shout"
SERVE = [
    sys.executable,
    "-m",
    "toolrun.cli",
    "mcp-serve",
    "--tools",
    f"calculator,calendar,{EXTRA}",
]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def http_url():
    port = _free_port()
    process = subprocess.Popen([*SERVE, "--transport", "http", "--port", str(port)], cwd=ROOT)
    deadline = time.monotonic() + 90
    while True:
        assert process.poll() is None, "toolrun mcp-serve exited"
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "toolrun mcp-serve did not start"
            time.sleep(0.1)
    yield f"http://127.0.0.1:{port}/mcp"
    process.kill()
    process.wait()


@pytest.fixture(params=["stdio", "http"])
def server(request):
    if request.param == "http":
        return request.getfixturevalue("http_url")
    command, *args = SERVE
    return StdioServerParameters(command=command, args=args, cwd=str(ROOT))


async def _session(server, calls):
    async with Client(server) as client:
        listed = (await client.list_tools()).tools
        results = [await client.call_tool(name, arguments) for name, arguments in calls]
        return listed, results


def test_lists_and_calls_built_in_and_file_tools(server):
    listed, results = asyncio.run(
        _session(
            server,
            [
                ("Calculator", {"expression": "23 * 17"}),
                ("shout", {"text": "hi", "times": 2}),
                ("Calculator", {"expression": "2 +"}),
                ("shout", {"text": "hi", "times": "lots"}),
                ("shout", {}),
                ("Nope", {}),
            ],
        )
    )
    tools = {t.name: t for t in listed}
    assert set(tools) == {"Calculator", "Calendar", "shout"}
    shout = tools["shout"]
    assert shout.description == "Upper-case text, repeated."
    assert shout.input_schema["properties"]["times"] == {
        "type": "integer",
        "default": 1,
        "description": "how many times",
    }
    assert shout.input_schema["required"] == ["text"]

    texts = [(r.is_error, r.content[0].text) for r in results]
    assert texts[0] == (False, "391")
    assert texts[1] == (False, "HI HI")
    assert texts[2][0] is True and "2 +" in texts[2][1]  # the Calculator's own error
    assert texts[3][0] is True and texts[3][1].startswith("invalid arguments: times")
    assert texts[4][0] is True and texts[4][1].startswith("invalid arguments: text")
    assert texts[5] == (True, "unknown tool 'Nope' (available: Calculator, Calendar, shout)")


def test_build_server_works_in_process():
    """The app-facing factory: an SDK client connects to it without a subprocess."""
    from toolrun.tools.calculator import calculator

    async def main():
        async with Client(build_server([calculator])) as client:
            names = [t.name for t in (await client.list_tools()).tools]
            result = await client.call_tool("calculator", {"expression": "1 + 1"})
            return names, result

    names, result = asyncio.run(main())
    assert names == ["Calculator"]
    assert (result.is_error, result.content[0].text) == (False, "2")


def test_round_trip_through_toolrun_mcp():
    """toolrun's client reads toolrun's server: the two bridges agree on schemas and errors."""
    from toolrun import mcp as toolrun_mcp
    from toolrun.registry import ToolRegistry

    try:
        registry = ToolRegistry(toolrun_mcp.tools(SERVE, cwd=str(ROOT)))
        assert registry.call("shout", "hey, 3").text == "HEY HEY HEY"
        assert registry.call("Calculator", "658,893 × 11.4%").text == "75113.8"
        assert registry.call("shout", "times=2").error == (
            "invalid arguments: arguments: 'text' is a required property"
        )  # checked here against the served schema, before the call
        assert registry.call("Calculator", "2 +").error.startswith("cannot")
    finally:
        toolrun_mcp.disconnect()
