"""Throughput of batched decoding against one generate() after another, same model, same run.

16 word problems (``--prompts``); each makes one or two calls to a calculator that takes 50 ms
(``--latency``). The real model does not call tools on its own, so a logits processor writes the
call heads at fixed points of each answer (after a few free tokens, and again after the first
result for half of the prompts), keeps "[" and "]" out of the free text and end-of-sequence
away until the planned calls are made: both runs see the same calls at the same places, and
every other token is the model's greedy choice.

    python benchmarks/bench_batch.py            # the default model (base + Calculator adapter)
    python benchmarks/bench_batch.py --quantize nf4
    python benchmarks/bench_batch.py --tiny     # a random 2-layer Llama, a quick check

The two runs alternate (``--repeats`` rounds, which goes first alternating too), and the ratio
is the median of the per-round ratios, with their range. Prints tokens/s for both and their
ratio, and writes an entry of benchmarks/results/batch.json (with the command and the load
average).

Both runs use the same number of torch threads (``--threads``, 1 by default). The 2 cores here
are shared: with 2 OpenMP threads on an oversubscribed machine a forward pass in the main
thread was measured 10x slower than in a worker thread, which would flatter the batch (whose
passes run in a worker thread). With one thread both are the same speed.
"""

from __future__ import annotations

import argparse
import json
import operator
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

import toolrun
from toolrun.backends.transformers import TransformersModel
from toolrun.batch import generate_batch
from toolrun.testing import PlannedCalls, tiny_llama

RESULTS = Path(__file__).parent / "results" / "batch.json"
PROBLEMS = [
    ("Tom has {a} apples and buys {b} more. How many apples does he have?", "+"),
    ("A box holds {a} pens. How many pens are in {b} boxes?", "*"),
    ("Sara had {a} dollars and spent {b}. How much is left?", "-"),
    ("A train travels {a} km each hour for {b} hours. How far does it go?", "*"),
]

OPERATORS = {"+": operator.add, "-": operator.sub, "*": operator.mul}


def workload(count: int) -> tuple[list[str], dict[str, list[tuple[int, str]]]]:
    prompts, plans = [], {}
    for i in range(count):
        template, op = PROBLEMS[i % len(PROBLEMS)]
        a, b = 12 + 7 * i, 3 + i % 9
        prompt = f"Question: {template.format(a=a, b=b)}\nAnswer:"
        plan = [(2 + i % 4, f" [Calculator({a} {op} {b}) →")]
        if i % 2:
            plan.append((3 + i % 3, f" [Calculator({a} {op} {b} + 1) →"))
        prompts.append(prompt)
        plans[prompt] = plan
    return prompts, plans


def divergence(
    model: toolrun.Model, prompt: str, alone: toolrun.Generation, batched: toolrun.Generation
) -> dict[str, float]:
    """Where two outputs part; how close a call it was there, seen by the model alone.

    ``top2_gap``: the gap between the two best logits, feeding the prompt and then one token at
    a time. ``reencode_diff``: how far those logits are from one pass over the same tokens, the
    model's own float noise between two ways of computing the same thing. A gap smaller than
    that noise is a near tie that rounding can flip either way.
    """
    common = 0
    for a, b in zip(alone.token_ids, batched.token_ids, strict=False):
        if a != b:
            break
        common += 1
    prompt_ids = model.bos_token_ids + model.encode(prompt)
    stepwise = model.new_session()
    logits = stepwise.feed(prompt_ids)
    for token in alone.token_ids[:common]:
        logits = stepwise.feed([token])
    whole = model.new_session().feed(prompt_ids + alone.token_ids[:common])
    top = torch.topk(logits, 2).values
    return {
        "at_token": common,
        "top2_gap": float(top[0] - top[1]),
        "reencode_diff": float((whole - logits).abs().max()),
    }


def tiny_model() -> TransformersModel:
    from transformers import AutoTokenizer

    from toolrun.models import _resolve_folder

    tokenizer = AutoTokenizer.from_pretrained(_resolve_folder(None))
    return TransformersModel(tiny_llama(tokenizer), tokenizer, name="tiny-random-llama")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a random 2-layer Llama")
    parser.add_argument("--quantize", choices=["nf4", "int8"], default=None)
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1, help="torch threads for both runs")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per tool call")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds of each run")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    latency = args.latency
    torch.set_num_threads(args.threads)

    @toolrun.tool(name="Calculator")
    def calculator(expression: str) -> str:
        """Evaluates "a op b op c" on integers left to right, slowly (a remote tool's stand-in)."""
        time.sleep(latency)
        words = expression.split()
        value = int(words[0])
        for op, number in zip(words[1::2], words[2::2], strict=True):
            value = OPERATORS[op](value, int(number))
        return str(value)

    model = tiny_model() if args.tiny else toolrun.load_model(quantize=args.quantize)
    prompts, plans = workload(args.prompts)
    options = {
        "tools": [calculator],
        "max_new_tokens": args.max_new_tokens,
        "logits_processor": [PlannedCalls(model, plans)],
    }
    toolrun.generate("Warm up:", model=model, max_new_tokens=2)
    load_start = os.getloadavg()[0]

    def run_loop() -> tuple[float, list[toolrun.Generation]]:
        started = time.perf_counter()
        outs = [toolrun.generate(p, model=model, **options) for p in prompts]
        return time.perf_counter() - started, outs

    def run_batch() -> tuple[float, list[toolrun.Generation]]:
        started = time.perf_counter()
        outs = generate_batch(prompts, model=model, **options)
        return time.perf_counter() - started, outs

    rounds = []
    for round_ in range(args.repeats):
        # alternate which goes first, so a drift in the machine's load favours neither
        if round_ % 2 == 0:
            (loop_s, alone), (batch_s, batched) = run_loop(), run_batch()
        else:
            (batch_s, batched), (loop_s, alone) = run_batch(), run_loop()
        tokens = sum(out.generated_tokens for out in alone)
        batch_tokens = sum(out.generated_tokens for out in batched)
        rounds.append(
            {
                "loop_s": loop_s,
                "batch_s": batch_s,
                "loop_tokens_per_s": tokens / loop_s,
                "batch_tokens_per_s": batch_tokens / batch_s,
                "ratio": (batch_tokens / batch_s) / (tokens / loop_s),
            }
        )
        print(
            f"  round {round_ + 1}: loop {tokens / loop_s:.1f} tok/s, batch "
            f"{batch_tokens / batch_s:.1f} tok/s, ratio {rounds[-1]['ratio']:.2f}x"
        )

    differ = [
        i for i, (a, b) in enumerate(zip(alone, batched, strict=True)) if a.token_ids != b.token_ids
    ]
    same = len(prompts) - len(differ)
    calls = sum(len(out.calls) for out in batched)

    def spread(key: str) -> dict[str, float]:
        values = [r[key] for r in rounds]
        return {"median": statistics.median(values), "min": min(values), "max": max(values)}

    report = {
        "command": " ".join(["python benchmarks/bench_batch.py", *sys.argv[1:]]),
        "model": model.name,
        "quantize": args.quantize,
        "device": str(getattr(model, "device", "cpu")),
        "cpu": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "load_average": {"start": load_start, "end": os.getloadavg()[0]},
        "prompts": len(prompts),
        "max_new_tokens": args.max_new_tokens,
        "tool_latency_s": latency,
        "calls": calls,
        "tokens": {
            "loop": sum(out.generated_tokens for out in alone),
            "batch": sum(out.generated_tokens for out in batched),
        },
        "repeats": args.repeats,
        "loop_tokens_per_s": spread("loop_tokens_per_s"),
        "batch_tokens_per_s": spread("batch_tokens_per_s"),
        "ratio": spread("ratio"),
        "rounds": rounds,
        "identical_outputs": same,
        "differences": [
            {"prompt": i, **divergence(model, prompts[i], alone[i], batched[i])} for i in differ
        ],
    }
    ratio = report["ratio"]
    print(
        f"{report['model']}: {len(prompts)} prompts, {calls} calls of {latency * 1000:.0f} ms, "
        f"{args.repeats} rounds\n"
        f"  ratio {ratio['median']:.2f}x ({ratio['min']:.2f}-{ratio['max']:.2f}); "
        f"identical outputs {same}/{len(prompts)}; load average {load_start:.1f}"
    )
    for difference in report["differences"]:
        print(f"  differs: {difference}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    key = "tiny" if args.tiny else (args.quantize or "default")
    results[key if args.prompts == 16 else f"{key}-{args.prompts}"] = report
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
