"""MCP tools in toolrun: a real MCP server written with the ``mcp`` SDK
(``tests/servers/mcp_demo.py``), launched over stdio and over streamable HTTP on 127.0.0.1, its
tools listed and called through the registry and by a scripted model writing bracket calls."""

from __future__ import annotations

import asyncio
import runpy
import shlex
import socket
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

pytest.importorskip("mcp")
pytest.importorskip("jsonschema")

import toolrun
from toolrun import mcp as toolrun_mcp
from toolrun.errors import ToolConfigError, ToolNotFoundError
from toolrun.registry import ToolRegistry, resolve_tool
from toolrun.testing import ScriptedModel

SERVER = Path(__file__).parent / "servers" / "mcp_demo.py"
COMMAND = [sys.executable, str(SERVER)]
STDIO = shlex.join(COMMAND)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class HttpServer:
    """The demo server over streamable HTTP in a subprocess; can be killed and restarted."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen([*COMMAND, "--http", str(self.port)])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process.poll() is None, "the MCP test server exited"
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("the MCP test server did not start")

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="module")
def http_server():
    server = HttpServer()
    server.start()
    yield server
    server.kill()


@pytest.fixture(scope="module", autouse=True)
def _close_sessions():
    yield
    toolrun_mcp.disconnect()


@pytest.fixture(params=["stdio", "http"])
def target(request) -> str:
    """What a user gives: a command line, or the server's URL."""
    if request.param == "http":
        return str(request.getfixturevalue("http_server").url)
    return STDIO


def _own_server(name: str, timeout: float = 10.0) -> ToolRegistry:
    """A stdio server of its own (its own session and process), for tests that break it."""
    return ToolRegistry(toolrun_mcp.tools(COMMAND, timeout=timeout, env={"TOOLRUN_TEST": name}))


def test_lists_names_descriptions_and_schemas_from_the_server():
    tools = {t.name: t for t in toolrun_mcp.tools(STDIO)}
    assert set(tools) == {
        "Calculator",
        "add",
        "weather",
        "get_time",
        "fail",
        "hang",
        "crash",
        "pid",
    }
    add = tools["add"]
    assert isinstance(add, toolrun.Tool)
    assert add.description == "Add two integers."
    assert add.signature == "add(a: integer, b: integer = 1)"
    assert add.parameters == ["a", "b"]
    parameters = add.json_schema()["function"]["parameters"]
    assert parameters["properties"]["a"]["type"] == "integer"
    assert parameters["required"] == ["a"]
    assert tools["get_time"].remote_name == "get-time"  # made an identifier for the syntax
    assert tools["Calculator"].raw_text and not add.raw_text


def test_a_prefix_lets_two_servers_with_the_same_names_share_a_registry(http_server):
    with pytest.raises(toolrun.ToolrunError, match="two different tools are named"):
        ToolRegistry([*toolrun_mcp.tools(STDIO), *toolrun_mcp.tools(http_server.url)])
    registry = ToolRegistry(
        [
            *toolrun_mcp.tools(STDIO, prefix="local_"),
            *toolrun_mcp.tools(http_server.url, prefix="remote-"),
        ]
    )
    assert {"local_add", "remote_add", "local_get_time", "remote_get_time"} <= set(registry.names)
    assert registry.call("local_add", "2, 3").text == "5"
    assert registry.call("remote_get_time", "").text == "12:00"  # sent as "get-time"
    assert registry.get("remote_get_time").remote_name == "get-time"


def test_calls_through_the_registry(target):
    registry = ToolRegistry([f"mcp:{target}"])
    assert registry.call("add", "2, 3").text == "5"
    assert registry.call("add", {"a": 2}).text == "3"  # the server applies the default
    assert registry.call("add", "b=4, a=1.0").text == "5"
    assert registry.call("Calculator", "23 * 17").text == "391"
    assert registry.call("get_time", "").text == "12:00"
    weather = registry.call("weather", "Paris, 2")
    assert weather.text == '{"city": "Paris", "days": 2, "sky": "clear"}'
    assert weather.arguments == {"city": "Paris", "days": 2}


def test_a_scripted_model_calls_mcp_tools_while_it_writes(target):
    model = ScriptedModel(["The sum is [add(2, 3) →", " so [Calculator(23 * 17) →", " done."])
    out = toolrun.generate("Q:", model=model, tools=[f"mcp:{target}"])
    assert [(c.name, c.result, c.error) for c in out.calls] == [
        ("add", "5", None),
        ("Calculator", "391", None),
    ]
    assert "[add(2, 3) → 5]" in out.text
    assert "[Calculator(23 * 17) → 391]" in out.text


def test_batched_generations_share_one_session():
    model = ScriptedModel(["x [add(40, 2) →", " y."])
    outs = toolrun.generate_batch(["A:", "B:", "C:"], model=model, tools=toolrun_mcp.tools(STDIO))
    assert [out.calls[0].result for out in outs] == ["42", "42", "42"]


def test_calls_from_another_event_loop():
    registry = ToolRegistry(toolrun_mcp.tools(STDIO))

    async def main() -> list[str]:
        outcomes = await asyncio.gather(*(registry.acall("add", f"{i}, 1") for i in range(5)))
        return [o.text for o in outcomes]

    assert asyncio.run(main()) == ["1", "2", "3", "4", "5"]


def test_schema_invalid_arguments_never_reach_the_server():
    registry = ToolRegistry(toolrun_mcp.tools(STDIO))
    assert registry.call("add", "'x'").text == (
        "error: invalid arguments: a: 'x' is not of type 'integer'"
    )
    assert registry.call("add", "").text == (
        "error: invalid arguments: arguments: 'a' is a required property"
    )
    assert (
        registry.call("add", {"a": 1.5}).error
        == "invalid arguments: a: 1.5 is not of type 'integer'"
    )
    assert (
        registry.call("add", "1, 2, 3").error
        == "invalid arguments: add takes 2 argument(s), 3 given"
    )
    assert registry.call("add", "1, a=2").error == "invalid arguments: argument 'a' given twice"


def test_a_tool_that_raises_gives_error_text_and_the_session_goes_on():
    registry = _own_server("raises")
    before = registry.call("pid", "").text
    outcome = registry.call("fail", "boom")
    assert outcome.error == "Error executing tool fail"
    assert registry.call("pid", "").text == before  # same server process


def test_a_server_killed_mid_session_is_relaunched_on_the_next_call():
    registry = _own_server("crash")
    first = registry.call("pid", "").text
    crashed = registry.call("crash", "")
    assert crashed.error is not None
    assert "closed the connection" in crashed.error
    second = registry.call("pid", "")
    assert second.error is None
    assert second.text != first


def test_an_http_server_killed_mid_session_reconnects_once_it_is_back():
    server = HttpServer()
    server.start()
    try:
        registry = ToolRegistry(toolrun_mcp.tools(server.url))
        first = registry.call("pid", "").text
        server.kill()
        down = registry.call("pid", "")
        assert down.error is not None
        server.start()  # same port
        back = registry.call("pid", "")
        assert back.error is None, back.error
        assert back.text != first
    finally:
        server.kill()


def test_a_call_that_never_answers_is_bounded_by_the_deadline_and_resets_the_session():
    tools = toolrun_mcp.tools(COMMAND, timeout=1.0, env={"TOOLRUN_TEST": "hang"})
    # pid's deadline leaves room to relaunch the server (seconds on a loaded machine)
    registry = ToolRegistry([replace(t, timeout=60.0) if t.name == "pid" else t for t in tools])
    first = registry.call("pid", "").text
    hung = registry.call("hang", "")
    assert hung.error == "timed out after 1 s"
    after = registry.call("pid", "")
    assert after.error is None
    assert after.text != first  # the hung server was replaced


def test_a_relaunch_outliving_one_calls_deadline_is_ready_for_the_next():
    registry = _own_server("slow start", timeout=0.2)
    toolrun_mcp.disconnect()  # the next call must start the server again: longer than 0.2 s
    assert registry.call("add", "1, 2").error == "timed out after 0.2 s"
    for _ in range(100):
        outcome = registry.call("add", "1, 2")
        if outcome.error is None:
            break
        time.sleep(0.1)
    assert outcome.text == "3"


def test_a_hanging_call_inside_a_generation_becomes_error_text():
    tools = toolrun_mcp.tools(COMMAND, timeout=1.0, env={"TOOLRUN_TEST": "hang-generate"})
    model = ScriptedModel(["Wait [hang() →", " then."])
    out = toolrun.generate("Q:", model=model, tools=tools)
    (call,) = out.calls
    assert call.error == "timed out after 1 s"
    assert "→ error: timed out after 1 s]" in out.text


def test_a_stdio_server_that_never_answers_the_handshake():
    silent = [sys.executable, "-c", "import time; time.sleep(120)"]
    with pytest.raises(ToolConfigError, match="did not start within 2 s"):
        toolrun_mcp.tools(silent, connect_timeout=2.0)


def test_an_http_server_that_never_answers():
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def accept_and_say_nothing() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            accepted.append(connection)

    threading.Thread(target=accept_and_say_nothing, daemon=True).start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/mcp"
    try:
        with pytest.raises(ToolConfigError, match="did not start within 2 s"):
            toolrun_mcp.tools(url, connect_timeout=2.0)
    finally:
        listener.close()
        for connection in accepted:
            connection.close()


def test_a_server_that_lists_200_tools():
    tools = toolrun_mcp.tools([*COMMAND, "--many", "200"])
    echoes = [t for t in tools if t.name.startswith("echo_")]
    assert len(echoes) == 200
    registry = ToolRegistry(tools)
    assert len(registry) == 208
    assert registry.call("echo_199", "hello").text == "199:hello"
    assert registry.call("echo_000", "text='a, b'").text == "0:a, b"


def test_references_name_one_tool_or_all():
    assert resolve_tool(f"mcp:{STDIO}#add").name == "add"
    assert resolve_tool(f"mcp:{STDIO}#get-time").name == "get_time"
    with pytest.raises(ToolNotFoundError, match="lists 8 tools"):
        resolve_tool(f"mcp:{STDIO}")
    with pytest.raises(ToolNotFoundError, match="has no tool 'nope'"):
        resolve_tool(f"mcp:{STDIO}#nope")
    assert len(ToolRegistry([f"mcp:{STDIO}#add", "calculator"])) == 2


def test_a_missing_extra_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "mcp", None)
    with pytest.raises(ToolConfigError, match=r"pip install 'toolrun\[mcp\]'"):
        toolrun_mcp.tools("python server.py")


@pytest.mark.slow
def test_the_default_models_calculator_call_is_served_over_mcp():
    if toolrun.models.default_adapter() is None:
        pytest.skip("no default adapter in models/ (run `make model`)")
    model = toolrun.load_model()
    out = toolrun.generate(
        "Question: What is 23 * 17?\nAnswer:",
        model=model,
        tools=[f"mcp:{STDIO}#Calculator"],
        max_new_tokens=40,
    )
    assert out.calls, out.text
    call = out.calls[0]
    assert (call.name, call.arguments_text, call.result) == ("Calculator", "23 * 17", "391")
    assert "[Calculator(23 * 17) → 391]" in out.text


def test_the_example_runs_offline(monkeypatch, capsys):
    path = Path(__file__).resolve().parents[1] / "examples" / "mcp_tools.py"
    monkeypatch.setattr(sys, "argv", [str(path), "--fake"])
    runpy.run_path(str(path), run_name="__main__")
    printed = capsys.readouterr().out
    assert "weather(city: string, days: integer = 1)" in printed
    assert "[Calculator(23 * 17) → 391]" in printed
