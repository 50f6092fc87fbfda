"""The Hermes adapter on SVAMP, ASDiv-A and MAWPS in chat mode: call rate, accuracy with tools
and with calls banned (what ``toolrun eval --call-format hermes`` runs, as a script until the
flag lands in ``toolrun/evaluate.py``).

    OMP_NUM_THREADS=1 python benchmarks/eval_hermes.py --limit 100 --name eval_hermes

Same subsets as ``toolrun eval --limit 100 --seed 0`` (the bracket adapter's
``benchmarks/results/eval_finetuned_100``), greedy, stopped once the answer is settled; records
resume from ``<name>.records.jsonl``. 128 new tokens, not text mode's 48: the model's own tokens
count, and a Hermes Calculator call is about 34 of them (``<tool_call>``, the JSON, the closing
tag) where a bracket call is about 10; at 48, 18 of the first 64 answers with tools ran out of
tokens inside or right after a call, against 3 of 300 for the bracket adapter.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from toolrun import ToolRegistry, load_model
from toolrun.evaluate import _label
from toolrun.evaluation.chat_mode import run_chat_mode
from toolrun.evaluation.report import Report, summarize
from toolrun.evaluation.runner import RecordStore, RunSettings, parse_mode
from toolrun.evaluation.tasks import default_data_root, load_set
from toolrun.models import BASE_MODEL
from toolrun.templates import HERMES_CHATML

ROOT = Path(__file__).resolve().parent.parent
ADAPTER = ROOT / "toolrun" / "adapters" / "toolrun-smollm2-135m-hermes"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sets", nargs="*", default=["svamp", "asdiv_a", "mawps"])
    parser.add_argument("--adapter", default=str(ADAPTER))
    parser.add_argument("--modes", default="no-tools,tools")
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument(
        "--data-root", default=None, help="default: $TOOLRUN_EVAL_DATA or ../shared/evals/data"
    )
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--name", default="eval_hermes")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    root = Path(args.data_root) if args.data_root else default_data_root()
    sets = [load_set(s, limit=args.limit, seed=args.seed, root=root) for s in args.sets]
    modes = [parse_mode(m) for m in args.modes.split(",")]
    settings = RunSettings(
        model_label=_label(BASE_MODEL, args.adapter),
        base_label=BASE_MODEL,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        tool_names={s.name: ["Calculator"] for s in sets},
    )
    out = Path(args.out)
    store = RecordStore(out / f"{args.name}.records.jsonl")
    loaded: dict[bool, object] = {}

    def loader(finetuned: bool):  # type: ignore[no-untyped-def]
        def load():  # type: ignore[no-untyped-def]
            if finetuned not in loaded:
                adapter = args.adapter if finetuned else None
                loaded[finetuned] = load_model(BASE_MODEL, adapter=adapter, device="cpu")
            return loaded[finetuned]

        return load

    results = []
    for evalset in sets:
        registry = ToolRegistry(evalset.family.tools)
        for mode in modes:
            records = run_chat_mode(
                evalset,
                mode,
                loader(mode.finetuned),
                registry,
                settings,
                store,
                call_format="hermes",
                chat_template=HERMES_CHATML,  # what template_for() picks for ChatML without tools
            )
            result = summarize(evalset.name, mode.name, records)
            results.append(result)
            print(
                f"{evalset.name} {mode.name}: {result.correct}/{result.n} correct, "
                f"calls in {100 * result.with_call:.0f}%",
                file=sys.stderr,
                flush=True,
            )
    config = {
        "model": settings.model_label,
        "base_model": settings.base_label,
        "adapter": args.adapter,
        "call_format": "hermes",
        "prompt": "chat: one user turn 'Question: {question}', Calculator listed (HERMES_CHATML)",
        "max_new_tokens": args.max_new_tokens,
        "batch_size": args.batch_size,
        "limit": args.limit,
        "seed": args.seed,
        "modes": [m.name for m in modes],
        "sets": {
            s.name: {"path": str(s.path), "examples": len(s.examples), "total": s.total}
            for s in sets
        },
    }
    report = Report(config=config, results=results)
    report.write(out, args.name)
    print(report.markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
