"""Tools from an MCP server, called by the model while it writes, with the calls traced.

    python examples/mcp_tools.py            # the default model calls the server's Calculator
    python examples/mcp_tools.py --fake     # a scripted model instead (a second, offline)
    python examples/mcp_tools.py --trace    # also print the OpenTelemetry spans (stderr)

The server is this same file run with ``--serve``: an MCP server written with the ``mcp`` SDK,
launched over stdio by ``toolrun.mcp.tools``. Any MCP server works the same way: a command
(``"npx -y some-mcp-server"``) or a URL (``"http://127.0.0.1:8000/mcp"``). Needs
``pip install 'toolrun[mcp]'`` (and ``opentelemetry-sdk`` for ``--trace``).
"""

import shlex
import sys


def serve() -> None:
    """The MCP server: two tools, declared the SDK's way."""
    from mcp.server.mcpserver import MCPServer

    server = MCPServer("example")

    @server.tool(name="Calculator")
    def calculator(expression: str) -> str:
        """Multiply two integers written 'a * b'."""
        a, b = (int(x) for x in expression.split("*"))
        return str(a * b)

    @server.tool()
    def weather(city: str, days: int = 1) -> dict[str, object]:
        """A (made up) forecast for a city."""
        return {"city": city, "days": days, "sky": "clear"}

    server.run("stdio")


def main() -> None:
    import toolrun
    import toolrun.mcp
    from toolrun import tracing

    if "--trace" in sys.argv:
        print(f"spans go to {tracing.setup_from_cli()}", file=sys.stderr)

    command = shlex.join([sys.executable, __file__, "--serve"])
    tools = toolrun.mcp.tools(command)  # launched once; the session is reused by every call
    for found in tools:
        print(f"{found.signature:45} {found.description}")

    if "--fake" in sys.argv:
        from toolrun.testing import ScriptedModel

        model = ScriptedModel([" 23 * 17 = [Calculator(23 * 17) →", " 391."])
    else:
        model = toolrun.load_model()
    out = toolrun.generate(
        "Question: What is 23 * 17?\nAnswer:", model=model, tools=tools, max_new_tokens=40
    )
    print(out.text)
    for call in out.calls:
        print(f"  {call.name}({call.arguments_text}) -> {call.result or call.error}")


if __name__ == "__main__":
    serve() if "--serve" in sys.argv else main()
