"""The ``toolrun`` command.

    toolrun generate "prompt" --tools calculator     run a prompt with tools, show the calls
    toolrun tools                                     list every available tool

Other subcommands (annotate, finetune, eval) live beside the code they drive: each module in
``_COMMAND_MODULES`` exposes ``register(subparsers)``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

_COMMAND_MODULES = (
    "toolrun.toolformer.commands",
    "toolrun.evaluate",
    "toolrun.mcp_server",
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    from .errors import ToolrunError

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
        description="Let a language model call tools while it writes (Toolformer-style).",
    )
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    gen = sub.add_parser("generate", help="generate from a prompt, running the tools it calls")
    gen.add_argument("prompt", help="the prompt text ('-' reads standard input)")
    gen.add_argument("--model", default=None, help="model folder, .gguf file or default name")
    gen.add_argument("--adapter", default=None, help="LoRA adapter folder to apply")
    gen.add_argument(
        "--quantize",
        choices=["nf4", "int8"],
        default=None,
        help="bitsandbytes quantisation (transformers backend)",
    )
    gen.add_argument("--backend", choices=["transformers", "llama.cpp"], default="transformers")
    gen.add_argument(
        "--tools",
        default="calculator,calendar",
        help="comma-separated tool names (default: %(default)s); '' for none",
    )
    gen.add_argument("--max-new-tokens", type=int, default=128)
    gen.add_argument(
        "--top-k-start",
        type=int,
        default=0,
        metavar="K",
        help="start a call whenever '[' is among the top K tokens (paper: 10)",
    )
    gen.add_argument("--stream", action="store_true", help="print text as it is generated")
    gen.set_defaults(run=_generate)

    tools = sub.add_parser("tools", help="list the available tools with their signatures")
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


def _generate(args: argparse.Namespace) -> int:
    import toolrun

    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    model = toolrun.load_model(
        args.model, adapter=args.adapter, quantize=args.quantize, backend=args.backend
    )
    names = [n.strip() for n in args.tools.split(",") if n.strip()]
    options = {"max_new_tokens": args.max_new_tokens, "api_start_top_k": args.top_k_start}
    if args.stream:
        for event in toolrun.stream(prompt, model=model, tools=names, **options):
            if isinstance(event, toolrun.TextDelta):
                print(event.text, end="", flush=True)
            elif isinstance(event, toolrun.Done):
                print()
                generation = event.generation
    else:
        generation = toolrun.generate(prompt, model=model, tools=names, **options)
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
