"""The ``toolrun`` command.

    toolrun generate "prompt" --tools calculator     run a prompt with tools, show the calls
    toolrun generate "question" --chat --model DIR   a chat turn in the model's own call format
    toolrun tools                                     list every available tool
    toolrun --version

Other subcommands (annotate, finetune, eval) live beside the code they drive: each module in
``_COMMAND_MODULES`` exposes ``register(subparsers)``. Dependencies' warnings, log lines and
progress bars are hidden unless ``--verbose`` is given.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import sys
from collections.abc import Sequence
from typing import Any

from .errors import ToolrunError

_COMMAND_MODULES = (
    "toolrun.toolformer.commands",
    "toolrun.evaluate",
    "toolrun.server.command",
    "toolrun.mcp_server",
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    from ._quiet import set_verbose

    set_verbose(bool(getattr(args, "verbose", False)))
    try:
        return int(args.run(args) or 0)
    except ToolrunError as exc:
        print(f"toolrun: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="toolrun",
        description="Let a language model call tools while it writes: in its own call format "
        "(Toolformer brackets, Hermes, Llama 3, Mistral), run mid-generation on the same KV cache.",
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {_version()}", help="print the version"
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="show dependencies' warnings, log messages and progress bars (hidden by default)",
    )
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    gen = sub.add_parser(
        "generate",
        help="generate from a prompt, running the tools it calls",
        description="Generate from a prompt with the default model (or --model), running the "
        "tools the model calls as it writes. The text goes to standard output, each call and "
        "the speed to standard error (--json: one JSON object on standard output instead).",
    )
    gen.add_argument("prompt", help="the prompt text ('-' reads standard input)")
    gen.add_argument(
        "--model",
        default=None,
        help="model folder, .gguf file or name (default: the default model, which calls the "
        "Calculator)",
    )
    gen.add_argument("--adapter", default=None, help="LoRA adapter folder to apply")
    gen.add_argument(
        "--quantize",
        choices=["nf4", "int8"],
        default=None,
        help="bitsandbytes quantisation (transformers backend)",
    )
    add_backend(gen)
    gen.add_argument(
        "--tools",
        default="calculator,calendar",
        help="comma-separated tool names, or module:function references (default: "
        "%(default)s); '' for none",
    )
    gen.add_argument(
        "--max-new-tokens",
        type=int,
        default=128,
        metavar="N",
        help="tokens the model may write, results not counted (default: %(default)s)",
    )
    gen.add_argument(
        "--temperature",
        type=float,
        default=None,
        metavar="T",
        help="sample at this temperature (default: greedy; 0 is greedy too)",
    )
    gen.add_argument(
        "--top-p",
        type=float,
        default=None,
        metavar="P",
        help="sample from the smallest set of tokens whose probability reaches P",
    )
    gen.add_argument(
        "--seed", type=int, default=None, help="seed for sampling, for repeatable outputs"
    )
    gen.add_argument(
        "--stop",
        action="append",
        default=None,
        metavar="TEXT",
        help="stop when the text contains TEXT (may be given several times)",
    )
    gen.add_argument(
        "--max-calls", type=int, default=None, metavar="N", help="allow at most N tool calls"
    )
    gen.add_argument(
        "--top-k-start",
        type=int,
        default=0,
        metavar="K",
        help="start a call whenever '[' is among the top K tokens (paper: 10; default: off)",
    )
    gen.add_argument(
        "--chat",
        action="store_true",
        help="send the prompt as a user message, rendered with the model's chat template "
        "(the tools' schemas go to the template)",
    )
    gen.add_argument(
        "--system", default=None, metavar="TEXT", help="with --chat: a system message first"
    )
    add_call_format(gen)
    gen.add_argument(
        "--chat-template",
        default=None,
        metavar="FILE",
        help="with --chat: a Jinja chat template file to use instead of the model's (or a "
        "built-in: question-answer, hermes-chatml)",
    )
    gen.add_argument(
        "--describe-tools",
        action="store_true",
        help="put the tools' descriptions and examples before a text prompt (bracket format)",
    )
    from . import tracing

    tracing.add_cli_argument(gen)
    output = gen.add_mutually_exclusive_group()
    output.add_argument("--stream", action="store_true", help="print text as it is generated")
    output.add_argument(
        "--json",
        action="store_true",
        help="print the whole result as one JSON object (text, calls, finish reason, counts)",
    )
    add_verbose(gen)
    gen.set_defaults(run=_generate)

    tools = sub.add_parser(
        "tools",
        help="list the available tools with their signatures",
        description="List every tool installed through the toolrun.tools entry points.",
    )
    tools.set_defaults(run=_tools)

    for module_name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        module.register(sub)
    return parser


def add_backend(command: argparse.ArgumentParser, extra: str = "") -> None:
    """``--backend``, the same for every command that loads a model."""
    command.add_argument(
        "--backend",
        choices=["auto", "transformers", "llama.cpp"],
        default="auto",
        help="the engine that runs the model (default: auto, llama.cpp on a CPU for GGUF models "
        "and the default model, transformers on CUDA, for HF folders and quantisation)" + extra,
    )


def add_call_format(command: argparse.ArgumentParser) -> None:
    """``--call-format``, the same for generate and serve."""
    command.add_argument(
        "--call-format",
        choices=["auto", "toolformer", "hermes", "llama3", "mistral"],
        default="auto",
        help="how the model writes calls (default: read from its chat template)",
    )


def add_verbose(command: argparse.ArgumentParser) -> None:
    """``--verbose`` after the subcommand too (``toolrun generate ... --verbose``)."""
    command.add_argument(
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,  # so the top-level flag is not reset by the subcommand
        help="show dependencies' warnings, log messages and progress bars",
    )


def _version() -> str:
    from . import __version__

    return __version__


def _generate(args: argparse.Namespace) -> int:
    import toolrun

    from ._quiet import quiet
    from .options import DecodingOptions

    text = sys.stdin.read() if args.prompt == "-" else args.prompt
    prompt: Any = text
    if args.chat:
        prompt = [{"role": "user", "content": text}]
        if args.system:
            prompt.insert(0, {"role": "system", "content": args.system})
    elif args.system or args.chat_template:
        raise ToolrunError("--system and --chat-template go with --chat")
    options: dict[str, Any] = {
        "max_new_tokens": args.max_new_tokens,
        "api_start_top_k": args.top_k_start,
        "call_format": args.call_format,
        "describe_tools": args.describe_tools,
    }
    if args.chat_template:
        from .templates import read_template

        options["chat_template"] = read_template(args.chat_template)
    if args.otel:
        from . import tracing

        print(f"  tracing: {tracing.setup_from_cli()}", file=sys.stderr)
    # A temperature above 0 or a top-p means sampling; temperature 0 is greedy.
    if (args.temperature is not None and args.temperature != 0) or args.top_p is not None:
        options["do_sample"] = True
    for name in ("temperature", "top_p", "seed", "stop", "max_calls"):
        if getattr(args, name) is not None:
            options[name] = getattr(args, name)
    # Everything that can be wrong is checked before the model loads (seconds, not a minute).
    DecodingOptions.build(**{k: v for k, v in options.items() if k not in _PROMPT_OPTIONS})
    names = [n.strip() for n in args.tools.split(",") if n.strip()]
    registry = toolrun.ToolRegistry(names)
    with quiet():
        model = toolrun.load_model(
            args.model, adapter=args.adapter, quantize=args.quantize, backend=args.backend
        )
    if args.stream:
        for event in toolrun.stream(prompt, model=model, tools=registry, **options):
            if isinstance(event, toolrun.TextDelta) and (
                event.channel == "content" or not args.chat
            ):
                print(event.text, end="", flush=True)
            elif isinstance(event, toolrun.Done):
                print()
                generation = event.generation
    else:
        generation = toolrun.generate(prompt, model=model, tools=registry, **options)
        if args.json:
            print(json.dumps(_as_json(generation), ensure_ascii=False, default=str))
            return 0
        if args.chat:  # what the assistant said, without the call markup and tool turns
            said = [m["content"] for m in generation.messages if m["role"] == "assistant"]
            print("\n".join(part for part in said if part))
        else:
            print(generation.text)
    for call in generation.calls:
        outcome = f"error: {call.error}" if call.error else call.result
        print(
            f"  call {call.name}({call.arguments_text}) -> {outcome}  "
            f"[{call.latency_s * 1000:.1f} ms]",
            file=sys.stderr,
        )
    print(
        f"  {generation.generated_tokens} tokens, {generation.tokens_per_second:.1f} tokens/s, "
        f"finish: {generation.finish_reason}",
        file=sys.stderr,
    )
    return 0


_PROMPT_OPTIONS = ("call_format", "describe_tools", "chat_template")


def _as_json(generation: Any) -> dict[str, Any]:
    """The Generation as JSON: every field but the token ids, plus tokens per second."""
    data = dataclasses.asdict(generation)
    data.pop("token_ids", None)
    data["tokens_per_second"] = generation.tokens_per_second
    return data


def _tools(args: argparse.Namespace) -> int:
    from .registry import available_tools

    seen = set()
    for found in sorted(available_tools().values(), key=lambda t: t.name.lower()):
        if found.name in seen:
            continue
        seen.add(found.name)
        first_line = (found.description.splitlines() or [""])[0]
        print(f"{found.signature}\n    {first_line}")
    if not seen:
        print("no tools installed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
