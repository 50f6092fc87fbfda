"""CLI: ``toolrun annotate``, ``toolrun finetune`` and ``toolrun score-annotations``.

Every input is checked (tools import, their examples, the options, the data files) before a
model loads, so a typo costs a second, not a model load.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from .._quiet import quiet
from ..models import BASE_MODEL

__all__ = ["register"]

_THREADS_HELP = (
    "torch CPU threads (on a busy shared machine 1 thread can be ten times faster "
    "than 2 that wait on each other)"
)


def _set_threads(threads: int | None) -> None:
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def register(subparsers: Any) -> None:
    ann = subparsers.add_parser(
        "annotate", help="annotate a corpus with useful tool calls (Toolformer sampling+filter)"
    )
    ann.add_argument(
        "corpus",
        help='JSONL file (text, or question/answer) or a folder; a row\'s "date" (ISO) is the '
        "day the Calendar answers with while that text is annotated",
    )
    ann.add_argument(
        "-o",
        "--output",
        required=True,
        help="annotated JSONL (a folder of shards with --ray); resumed if present",
    )
    ann.add_argument(
        "--model",
        default=BASE_MODEL,
        help="model folder, .gguf or name (default: the base, %(default)s)",
    )
    ann.add_argument("--adapter", default=None, help="LoRA adapter to annotate with (round 2)")
    ann.add_argument(
        "--tools",
        default="calculator",
        help="comma-separated names, module:function or path/to/file.py:function references "
        "(default: %(default)s)",
    )
    ann.add_argument(
        "--proposer",
        choices=["auto", "examples", "heuristic"],
        default="auto",
        help="candidate calls: sampled under the tool's example prompt, a heuristic (the "
        "Calculator's; a tool without arguments), or auto: the heuristic where there is one",
    )
    ann.add_argument(
        "--positions",
        choices=["auto", "numbers", "words"],
        default="auto",
        help="where calls may go (auto: before numbers for the Calculator and tools returning "
        "numbers, else before any word)",
    )
    ann.add_argument("--placement", choices=["inline", "prefix"], default="inline")
    ann.add_argument(
        "--criterion",
        choices=["gain", "paper"],
        default="gain",
        help="gain: L_noresult - L+; paper: min(L_none, L_noresult) - L+",
    )
    ann.add_argument(
        "--tau-s",
        type=float,
        default=None,
        help="min p(' ['); default per tool, the paper's: 0 Calculator/MT, 0.05 others",
    )
    ann.add_argument("--tau-f", type=float, default=1.0, help="min gain (default %(default)s)")
    ann.add_argument(
        "--k", type=int, default=None, help="positions per text (default 20 Calculator/MT, 5)"
    )
    ann.add_argument(
        "--m",
        type=int,
        default=None,
        help="calls sampled per position (default: 0 with a heuristic, else 10 MT, 5 others)",
    )
    ann.add_argument("--temperature", type=float, default=1.0, help="for sampled calls")
    ann.add_argument(
        "--max-call-tokens", type=int, default=24, help="longest sampled call (tokens)"
    )
    ann.add_argument("--seed", type=int, default=0)
    ann.add_argument("--window", type=int, default=5)
    ann.add_argument("--batch-size", type=int, default=32)
    ann.add_argument(
        "--no-consistency",
        action="store_true",
        help="keep Calculator candidates whose result differs from the next number",
    )
    ann.add_argument(
        "--keep-copied",
        action="store_true",
        help="also try Calculator calls before numbers already written earlier",
    )
    ann.add_argument(
        "--propose-gold",
        action="store_true",
        help="try each text's gold marks (GSM8K's <<48+(48/2)=72>>) as Calculator calls first, "
        "for answers that write a result without its expression",
    )
    ann.add_argument("--skip", type=int, default=0, help="skip the first N rows")
    ann.add_argument("--limit", type=int, default=None, help="use at most N rows")
    ann.add_argument("--last", type=int, default=None, help="use only the last N rows (held-out)")
    ann.add_argument("--quiet", action="store_true", help="no progress bar")
    ann.add_argument("--threads", type=int, default=None, help=_THREADS_HELP)
    ann.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    ray = ann.add_argument_group("on Ray Data (pip install 'toolrun[ray]')")
    ray.add_argument("--ray", action="store_true", help="annotate on Ray, a model per actor")
    ray.add_argument(
        "--ray-address", default=None, help="join this cluster (default: start a local Ray)"
    )
    ray.add_argument("--workers", type=int, default=1, help="actors, each with its own model")
    ray.add_argument("--shard-size", type=int, default=64, help="texts per output shard")
    ray.add_argument("--format", choices=["jsonl", "parquet"], default="jsonl")
    ann.set_defaults(run=_annotate)

    fin = subparsers.add_parser("finetune", help="LoRA-finetune a model on annotated texts")
    fin.add_argument(
        "annotations",
        nargs="+",
        help="annotated JSONL (or a folder of shards) from `toolrun annotate`; several are "
        "merged by text (one run per tool, say)",
    )
    fin.add_argument("-o", "--output", required=True, help="adapter folder to write")
    fin.add_argument(
        "--model", default=BASE_MODEL, help="model to train (default: the base, %(default)s)"
    )
    fin.add_argument("--epochs", type=float, default=1.0)
    fin.add_argument("--batch-size", type=int, default=8, help="texts per optimizer step")
    fin.add_argument(
        "--micro-batch-size",
        type=int,
        default=None,
        help="texts per forward pass; the rest of the batch is gradient accumulation",
    )
    fin.add_argument(
        "--quantize",
        choices=["nf4"],
        default=None,
        help="QLoRA: the base in 4 bit (bitsandbytes nf4), LoRA on top",
    )
    fin.add_argument("--gradient-checkpointing", action="store_true", help="less memory, slower")
    fin.add_argument("--no-bf16", action="store_true", help="float32 on CUDA (default: bf16)")
    fin.add_argument(
        "--save-steps", type=int, default=25, help="checkpoint every N steps (0: none)"
    )
    fin.add_argument(
        "--restart", action="store_true", help="ignore checkpoints of an interrupted run"
    )
    fin.add_argument("--lr", type=float, default=3e-4)
    fin.add_argument("--max-length", type=int, default=320)
    fin.add_argument("--lora-r", type=int, default=8)
    fin.add_argument("--lora-alpha", type=int, default=16)
    fin.add_argument("--full", action="store_true", help="full finetuning instead of LoRA")
    fin.add_argument("--merge", action="store_true", help="also save the merged model")
    fin.add_argument(
        "--chat-template",
        default=None,
        metavar="FILE",
        help="a Jinja chat template saved with the adapter (chat_template.jinja); chats with "
        "the finetuned model are rendered with it instead of the base's template. "
        "'question-answer' is toolrun's own for adapters trained on Question:/Answer: texts",
    )
    fin.add_argument(
        "--only-with-calls",
        action="store_true",
        help="train only on texts that kept at least one call",
    )
    fin.add_argument(
        "--criterion",
        choices=["gain", "paper"],
        default=None,
        help="re-select calls from the stored losses with this criterion ...",
    )
    fin.add_argument("--tau-f", type=float, default=None, help="... and this threshold")
    fin.add_argument(
        "--keep-repeated-calls",
        action="store_true",
        help="with --criterion: keep a call that repeats an earlier one in its text (same tool, "
        "arguments and result; dropped by default)",
    )
    fin.add_argument(
        "--tools", default=None, help="keep only these tools' calls in the texts (comma-separated)"
    )
    fin.add_argument("--seed", type=int, default=0)
    fin.add_argument("--quiet", action="store_true")
    fin.add_argument("--threads", type=int, default=None, help=_THREADS_HELP)
    fin.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    fin.set_defaults(run=_finetune)

    sco = subparsers.add_parser(
        "score-annotations", help="precision/recall of kept calls against gold marks"
    )
    sco.add_argument("annotations", nargs="+", help="annotated JSONL file(s)")
    sco.add_argument("--criterion", choices=["gain", "paper"], default=None)
    sco.add_argument("--tau-f", type=float, default=None)
    sco.add_argument("--json", action="store_true", help="print JSON rows")
    sco.set_defaults(run=_score)


def _annotate(args: argparse.Namespace) -> int:
    import toolrun

    from .annotate import AnnotateConfig, annotate, plan_tools
    from .data import load_corpus

    _set_threads(args.threads)
    names = [n.strip() for n in args.tools.split(",") if n.strip()]
    config = AnnotateConfig(
        placement=args.placement,
        criterion=args.criterion,
        tau_s=args.tau_s,
        tau_f=args.tau_f,
        k=args.k,
        m=args.m,
        proposer=args.proposer,
        positions=args.positions,
        temperature=args.temperature,
        max_call_tokens=args.max_call_tokens,
        window=args.window,
        batch_size=args.batch_size,
        consistency=not args.no_consistency,
        skip_copied=not args.keep_copied,
        propose_gold=args.propose_gold,
        seed=args.seed,
    )
    records = load_corpus(args.corpus, skip=args.skip, limit=args.limit, last=args.last)
    if args.ray:
        from .ray_annotate import annotate_on_ray

        stats = annotate_on_ray(
            records,
            args.output,
            tools=names,
            config=config,
            model=args.model,
            adapter=args.adapter,
            device=args.device,
            address=args.ray_address,
            workers=args.workers,
            threads=args.threads or 1,
            shard_size=args.shard_size,
            format=args.format,
            progress=not args.quiet,
        )
    else:
        registry = toolrun.ToolRegistry(names)
        config.tools = [t.name for t in registry]
        plan_tools(registry, config)  # tools, examples and options, before the model loads
        with quiet():
            model = toolrun.load_model(
                args.model, adapter=args.adapter, device=args.device, backend="transformers"
            )
        stats = annotate(model, registry, records, config, args.output, progress=not args.quiet)
    print(json.dumps({k: v for k, v in stats.items() if k != "config"}, indent=2))
    return 0


def _finetune(args: argparse.Namespace) -> int:
    import toolrun

    from ..templates import read_template
    from .finetune import FinetuneConfig, finetune, load_texts

    _set_threads(args.threads)
    config = FinetuneConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        micro_batch_size=args.micro_batch_size,
        learning_rate=args.lr,
        max_length=args.max_length,
        lora_r=args.lora_r,
        lora_alpha=args.lora_alpha,
        full=args.full,
        seed=args.seed,
        only_with_calls=args.only_with_calls,
        gradient_checkpointing=args.gradient_checkpointing,
        bf16=False if args.no_bf16 else None,
        save_steps=args.save_steps,
    )
    config.check()
    chat_template = read_template(args.chat_template) if args.chat_template else None
    tools = [n.strip() for n in args.tools.split(",") if n.strip()] if args.tools else None
    texts = load_texts(
        args.annotations,
        only_with_calls=args.only_with_calls,
        criterion=args.criterion,
        tau_f=args.tau_f,
        tools=tools,
        repeated_calls=args.keep_repeated_calls,
    )
    with quiet():
        model = toolrun.load_model(
            args.model,
            backend="transformers",
            device=args.device,
            quantize=args.quantize,
            dtype="float32" if args.full else None,
        )
    summary = finetune(
        model,
        texts,
        args.output,
        config,
        merge=args.merge,
        progress=not args.quiet,
        resume=not args.restart,
        chat_template=chat_template,
    )
    print(json.dumps({k: v for k, v in summary.items() if k != "config"}, indent=2))
    return 0


def _score(args: argparse.Namespace) -> int:
    from .annotate import load_annotations
    from .score import precision_recall, sweep

    for path in args.annotations:
        lines = load_annotations(path)
        if args.criterion is not None or args.tau_f is not None:
            rows = [
                {
                    "criterion": args.criterion or "kept",
                    "tau_f": args.tau_f,
                    **precision_recall(lines, args.criterion, args.tau_f),
                }
            ]
        else:
            rows = [{"criterion": "kept", "tau_f": None, **precision_recall(lines)}, *sweep(lines)]
        if args.json:
            for row in rows:
                print(json.dumps({"file": path, **row}))
            continue
        print(f"{path}: {len(lines)} texts")
        print(f"  {'criterion':<9} {'tau_f':>5} {'precision':>9} {'recall':>6} {'kept':>5}")
        for row in rows:
            tau = "" if row["tau_f"] is None else f"{row['tau_f']:.2f}"
            print(
                f"  {row['criterion']:<9} {tau:>5} {row['precision']:>9.3f} "
                f"{row['recall']:>6.3f} {row['kept']:>5}"
            )
    return 0
