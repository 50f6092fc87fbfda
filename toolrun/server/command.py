"""``toolrun serve``: start the OpenAI-compatible server.

toolrun serve --tools calculator,calendar                    # the default model, 127.0.0.1:8000
toolrun serve --model path/to/model --host 0.0.0.0 --api-key "$KEY"
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
from typing import Any

from .settings import API_KEY_VARIABLE, ServerSettings

__all__ = ["approval_policy", "register"]


def register(subparsers: Any) -> None:
    from ..cli import add_backend, add_call_format  # here: cli imports this module

    serve = subparsers.add_parser(
        "serve",
        help="serve the model over an OpenAI-compatible HTTP API, running tools mid-generation",
        description="Serve /v1/chat/completions, /v1/completions, /v1/models, /health and "
        "/metrics. Tools given with --tools run on the server while the model writes; tools "
        "that only a request names go back to the client as tool_calls.",
    )
    serve.add_argument("--model", default=None, help="model folder, .gguf file or default name")
    serve.add_argument("--adapter", default=None, help="LoRA adapter folder to apply")
    serve.add_argument(
        "--quantize",
        choices=["nf4", "int8"],
        default=None,
        help="bitsandbytes quantisation (transformers backend)",
    )
    add_backend(serve)
    serve.add_argument(
        "--mcp",
        action="append",
        default=[],
        metavar="SERVER",
        help="serve the tools of an MCP server too: a command to launch (stdio) or an http(s) "
        "URL (streamable HTTP); may be given several times",
    )
    serve.add_argument(
        "--tools",
        default="calculator,calendar",
        help="server-side tools: names, module:function or file.py:function, comma-separated "
        "(default: %(default)s); '' for none",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback)")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (default: 8000)")
    serve.add_argument(
        "--api-key",
        default=None,
        help=f"require 'Authorization: Bearer KEY' (default: ${API_KEY_VARIABLE} when set)",
    )
    serve.add_argument("--served-model-name", default=None, help="the model id clients send")
    serve.add_argument("--max-batch", type=int, default=64, help="requests decoding together")
    serve.add_argument("--max-queue", type=int, default=256, help="requests waiting; then 503")
    serve.add_argument("--max-tokens", type=int, default=4096, help="largest max_tokens allowed")
    serve.add_argument("--context-length", type=int, default=None, help="prompt + completion cap")
    serve.add_argument(
        "--max-body-bytes",
        type=int,
        default=1 << 20,
        help="largest request body; larger ones get 413 (default: 1 MiB)",
    )
    serve.add_argument(
        "--approve",
        default="",
        metavar="TOOLS",
        help="tools marked requires_approval that may run on the server: comma-separated "
        "names, or 'all' (default: none; they are refused)",
    )
    add_call_format(serve)
    serve.add_argument(
        "--chat-template",
        default=None,
        metavar="FILE",
        help="a Jinja chat template file to use (or a built-in: question-answer, hermes-chatml)",
    )
    serve.add_argument(
        "--temperature",
        type=float,
        default=0.0,
        help="for requests that set none (default: 0, greedy)",
    )
    serve.add_argument(
        "--top-k-start",
        type=int,
        default=0,
        metavar="K",
        help="start a call whenever '[' is among the top K tokens (paper: 10)",
    )
    serve.add_argument("--max-calls", type=int, default=None, help="tool calls per request")
    serve.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="uvicorn's log level (default: %(default)s)",
    )
    from .. import tracing

    tracing.add_cli_argument(serve)
    serve.set_defaults(run=_serve)


def approval_policy(names: str) -> Any:
    """``approve(name, arguments)`` allowing the listed tools (or all); None for none."""
    allowed = {n.strip().lower() for n in names.split(",") if n.strip()}
    if not allowed:
        return None
    if "all" in allowed:
        return lambda name, arguments: True
    return lambda name, arguments: name.lower() in allowed


def _serve(args: argparse.Namespace) -> int:
    from . import require_extra

    require_extra()
    import uvicorn

    import toolrun

    from .app import create_app

    overrides: dict[str, Any] = {}
    if args.api_key:
        overrides["api_key"] = args.api_key
    settings = ServerSettings(
        host=args.host,
        port=args.port,
        model_id=args.served_model_name,
        max_batch=args.max_batch,
        max_queue=args.max_queue,
        max_tokens=args.max_tokens,
        context_length=args.context_length,
        max_body_bytes=args.max_body_bytes,
        approve=approval_policy(args.approve),
        call_format=None if args.call_format == "auto" else args.call_format,
        chat_template=_read_template(args.chat_template),
        default_temperature=args.temperature,
        decoding=_decoding(args),
        **overrides,
    )
    if settings.api_key is None and not _is_loopback(settings.host):
        print(
            f"toolrun: warning: serving on {settings.host} without an API key; anyone who can "
            f"reach it can use the model and its tools (set --api-key or ${API_KEY_VARIABLE})",
            file=sys.stderr,
        )
    model = toolrun.load_model(
        args.model, adapter=args.adapter, quantize=args.quantize, backend=args.backend
    )
    tools: list[Any] = [t.strip() for t in args.tools.split(",") if t.strip()]
    tools += [f"mcp:{server}" for server in args.mcp]  # every tool each MCP server lists
    if args.otel:
        from .. import tracing

        print(f"toolrun: tracing: {tracing.setup_from_cli('toolrun-serve')}", file=sys.stderr)
    app = create_app(model, tools, settings=settings)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=args.log_level)
    return 0


def _read_template(path: str | None) -> str | None:
    from ..templates import read_template

    return None if path is None else read_template(path)


def _decoding(args: argparse.Namespace) -> dict[str, Any]:
    decoding: dict[str, Any] = {}
    if args.top_k_start:
        decoding["api_start_top_k"] = args.top_k_start
    if args.max_calls is not None:
        decoding["max_calls"] = args.max_calls
    return decoding


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
