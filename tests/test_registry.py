"""Tools from functions: decoration, validation, invocation, failures as text, policy."""

import asyncio
import time

import pytest

import toolrun
from toolrun import CallPolicy, Tool, ToolContext, ToolDefinitionError, ToolError, ToolRegistry


@toolrun.tool
def add(a: int, b: int = 1) -> int:
    """Add two integers.

    Args:
        a: the first number.
        b: the second number,
            one by default.

    Returns:
        The sum.
    """
    return a + b


@toolrun.tool(name="Echo", timeout=0.2, max_result_chars=20)
def echo(text: str) -> str:
    """Repeat the text."""
    return text


def test_decorator_returns_the_function_unchanged():
    assert add(2, 3) == 5
    assert echo("x") == "x"
    tool = add.__toolrun_tool__
    assert isinstance(tool, Tool)
    assert tool.name == "add"
    assert tool.description == "Add two integers."
    assert tool.parameter_help == {
        "a": "the first number.",
        "b": "the second number, one by default.",
    }
    assert tool.signature == "add(a: int, b: int = 1)"
    assert echo.__toolrun_tool__.name == "Echo"
    assert echo.__toolrun_tool__.raw_text


def test_definition_problems_are_reported_together():
    def bad(x, *args, y: int):
        return x

    with pytest.raises(ToolDefinitionError) as info:
        toolrun.tool(bad)
    message = str(info.value)
    assert "'x' has no type hint" in message
    assert "*args" in message


def test_lambda_needs_a_name_and_options_are_checked():
    with pytest.raises(ToolDefinitionError, match="lambda"):
        toolrun.tool(lambda x: x)
    with pytest.raises(ToolDefinitionError, match="no type hint"):
        toolrun.tool(name="Square")(lambda x: x)  # named, but still without hints
    with pytest.raises(ToolDefinitionError, match="timeout"):

        @toolrun.tool(timeout=0)
        def g(x: int) -> int:
            return x

    with pytest.raises(ToolDefinitionError, match="identifier"):

        @toolrun.tool(name="two words")
        def h(x: int) -> int:
            return x


def test_duplicate_names_in_a_registry():
    def add2(a: int) -> int:
        return a

    other = Tool.from_function(add2, name="add")
    with pytest.raises(ToolDefinitionError, match="two different tools"):
        ToolRegistry([add, other])
    assert len(ToolRegistry([add, add])) == 1


def test_arguments_are_validated_and_coerced():
    registry = ToolRegistry([add])
    assert registry.call("add", "2, 3").result == "5"
    assert registry.call("ADD", "a='4'").result == "5"  # names ignore case; "4" coerced to 4
    bad = registry.call("add", "'four'")
    assert bad.result is None and bad.error.startswith("invalid arguments: a:")
    assert "takes 2" in registry.call("add", "1, 2, 3").error
    assert "given twice" in registry.call("add", "1, a=2").error
    assert "invalid arguments" in registry.call("add", "b=2").error  # a is required
    assert "invalid arguments" in registry.call("add", "1, c=3").error  # extra forbidden
    assert registry.call("add", "1 +").error.startswith("invalid arguments: cannot parse")


def test_raw_text_tool_gets_the_text_between_parentheses():
    registry = ToolRegistry([echo])
    assert registry.call("Echo", "Where was Joe Biden born?").result == "Where was Joe Biden born?"
    assert registry.call("Echo", "'quoted, with comma'").result == "quoted, with comma"
    assert registry.call("Echo", "a, b").result == "a, b"


def test_failures_become_text_never_exceptions():
    @toolrun.tool
    def broken(x: int) -> int:
        raise ZeroDivisionError("division by zero")

    @toolrun.tool
    def polite(x: int) -> int:
        raise ToolError("no data for that year")

    @toolrun.tool(timeout=0.1)
    def slow(x: int) -> int:
        time.sleep(3)  # far past the deadline: the bound below holds on a loaded machine
        return x

    registry = ToolRegistry([broken, polite, slow])
    assert registry.call("broken", "1").text == "error: ZeroDivisionError: division by zero"
    assert registry.call("polite", "1").text == "error: no data for that year"
    started = time.perf_counter()
    outcome = registry.call("slow", "1")
    assert outcome.error == "timed out after 0.1 s"
    assert time.perf_counter() - started < 2.5
    unknown = registry.call("nope", "")
    assert unknown.error == "unknown tool 'nope' (available: broken, polite, slow)"


def test_async_tools_from_sync_and_async_code():
    @toolrun.tool(timeout=0.2)
    async def later(x: int) -> int:
        await asyncio.sleep(0.01)
        return x * 2

    @toolrun.tool(timeout=0.05)
    async def never(x: int) -> int:
        await asyncio.sleep(5)
        return x

    registry = ToolRegistry([later, never, add])
    assert registry.call("later", "4").result == "8"
    assert registry.call("never", "1").error == "timed out after 0.05 s"

    async def main():
        results = await asyncio.gather(
            registry.acall("later", "1"),
            registry.acall("add", "1, 1"),
            registry.acall("never", "1"),
        )
        return [r.text for r in results]

    assert asyncio.run(main()) == ["2", "2", "error: timed out after 0.05 s"]


def test_context_parameter_is_injected_not_exposed():
    @toolrun.tool
    def whoami(question: str, ctx: ToolContext) -> str:
        return f"{ctx.tool_name}:{question}"

    tool = whoami.__toolrun_tool__
    assert tool.parameters == ["question"] and tool.raw_text
    out = ToolRegistry([whoami]).call("whoami", "hi", context=ToolContext(tool_name="W"))
    assert out.result == "W:hi"


def test_policy_caps_calls_and_asks_for_approval():
    @toolrun.tool(requires_approval=True)
    def send(to: str) -> str:
        return f"sent to {to}"

    registry = ToolRegistry([send, add])
    assert "needs approval" in registry.call("send", "bob", policy=CallPolicy()).error
    asked = []

    def approve(name, arguments):
        asked.append((name, arguments))
        return arguments["to"] == "bob"

    policy = CallPolicy(max_calls=2, approve=approve)
    assert registry.call("send", "bob", policy=policy).result == "sent to bob"
    assert registry.call("send", "eve", policy=policy).error == "call to send was not approved"
    assert registry.call("add", "1", policy=policy).result == "2"
    assert registry.call("add", "1", policy=policy).error == "call limit reached (2 per generation)"
    assert asked == [("send", {"to": "bob"}), ("send", {"to": "eve"})]


def test_config_check_runs_at_registration():
    def needs_key() -> None:
        raise toolrun.ToolConfigError("set MY_KEY")

    @toolrun.tool(check=needs_key)
    def keyed(q: str) -> str:
        return q

    with pytest.raises(toolrun.ToolConfigError, match="MY_KEY"):
        ToolRegistry([keyed])


def test_unknown_tool_name_is_a_clear_error():
    with pytest.raises(toolrun.ToolNotFoundError, match="no tool named 'nosuchtool'"):
        ToolRegistry(["nosuchtool"])
