"""Server throughput at 1, 8 and 64 concurrent streaming clients, and prefix reuse.

Every request is a chat turn asking a word problem whose answer calls the Calculator on the
server (a tool that takes 50 ms, ``--latency``). The default model does not call tools on every
prompt by itself, so the server runs with a logits processor that writes each prompt's call
head at a fixed point and keeps "[" and "]" out of the free text (``PlannedCalls``, as in
bench_batch.py): every arm sees the same calls at the same places, and every other token is the
model's greedy choice. The clients are the real ``openai.AsyncOpenAI`` streaming over HTTP to
uvicorn on 127.0.0.1, in the same process (the server in a thread).

    python benchmarks/bench_server.py            # the default model (SmolLM2-135M + adapter)
    python benchmarks/bench_server.py --tiny     # a random 2-layer Llama, a quick check

Concurrency 1 is the requests sent one after another; it runs on a subset (``--sequential``
requests) because only its rate matters, and runs first and last so that drift on the shared
machine shows.

Prefix reuse: a conversation of about 1,000 tokens (a long system prompt), answered once; then the
follow-up (the answer and a new question appended) is timed to its first token, on this server
(the earlier sequence's cache is reused) and on a second server with the prefix cache off (the
whole conversation is prefilled again), alternating, ``--rounds`` times with fresh system
prompts.

Writes benchmarks/results/server.json. One torch thread everywhere (see bench_batch.py for why).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch

import toolrun
from toolrun.server import ServerSettings, create_app
from toolrun.server.testing import LiveServer
from toolrun.testing import PlannedCalls

RESULTS = Path(__file__).parent / "results" / "server.json"
PROBLEMS = [
    "Tom has {a} apples and buys {b} more. How many apples does he have?",
    "A box holds {a} pens. How many pens are in {b} boxes?",
    "Sara had {a} dollars and spent {b}. How much is left?",
    "A train travels {a} km each hour for {b} hours. How far does it go?",
]
OPERATORS = ["+", "*", "-", "*"]


def workload(
    model: toolrun.Model, template: str | None, count: int
) -> tuple[list[str], dict[str, list[tuple[int, str]]]]:
    """The questions, and each one's planned call keyed by the chat prompt the server renders."""
    from toolrun.templates import render

    questions, plans = [], {}
    for i in range(count):
        a, b = 12 + 7 * i, 3 + i % 9
        question = PROBLEMS[i % 4].format(a=a, b=b)
        rendered = render(model, template or "", [{"role": "user", "content": question}])
        questions.append(question)
        plans[rendered] = [(2 + i % 4, f" [Calculator({a} {OPERATORS[i % 4]} {b}) →")]
    return questions, plans


async def one(
    api: Any, model_id: str, question: str, max_tokens: int, messages: list | None = None
) -> dict[str, Any]:
    started = time.perf_counter()
    first = None
    text, ids, usage = "", set(), None
    calls: list[dict[str, Any]] = []  # the server's own calls, OpenAI-style
    stream = await api.chat.completions.create(
        model=model_id,
        messages=messages or [{"role": "user", "content": question}],
        max_tokens=max_tokens,
        stream=True,
        stream_options={"include_usage": True},
    )
    async for chunk in stream:
        ids.add(chunk.id)
        if chunk.usage is not None:
            usage = chunk.usage
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        if delta.content and first is None:
            first = time.perf_counter()
        text += delta.content or ""
        calls += getattr(delta, "server_tool_calls", None) or []
    assert usage is not None and len(ids) == 1
    return {
        "prompt": question,
        "text": text,
        "id": ids.pop(),
        "calls": [c["function"]["arguments"] for c in calls],
        "generated": usage.completion_tokens,
        "prompt_tokens": usage.prompt_tokens,
        "ttft_s": (first or time.perf_counter()) - started,
    }


async def arm(url: str, model_id: str, prompts: list[str], clients: int, max_tokens: int) -> dict:
    import openai

    api = openai.AsyncOpenAI(base_url=url + "/v1", api_key="x", max_retries=0, timeout=3600)
    gate = asyncio.Semaphore(clients)

    async def limited(prompt: str) -> dict[str, Any]:
        async with gate:
            return await one(api, model_id, prompt, max_tokens)

    started = time.perf_counter()
    results = await asyncio.gather(*(limited(p) for p in prompts))
    wall = time.perf_counter() - started
    await api.close()
    tokens = sum(r["generated"] for r in results)
    ttfts = [r["ttft_s"] for r in results]
    return {
        "clients": clients,
        "requests": len(prompts),
        "wall_s": round(wall, 2),
        "generated_tokens": tokens,
        "tokens_per_s": round(tokens / wall, 2),
        "ttft_median_s": round(statistics.median(ttfts), 3),
        "ttft_max_s": round(max(ttfts), 3),
        "results": results,
    }


SYSTEM = (
    "You are a careful assistant for arithmetic word problems. Read the question, find the "
    "numbers, write the calculation with the Calculator, and give the answer in one sentence. "
)


async def prefix_reuse(
    url: str, cold_url: str, model_id: str, rounds: int, repeats: int
) -> dict[str, Any]:
    """Time to first token of a follow-up turn: with its prefix cached vs prefilled again."""
    import openai

    reused: list[float] = []
    cold: list[float] = []
    prompt_tokens = 0
    api = openai.AsyncOpenAI(base_url=url + "/v1", api_key="x", max_retries=0, timeout=600)
    cold_api = openai.AsyncOpenAI(
        base_url=cold_url + "/v1", api_key="x", max_retries=0, timeout=600
    )
    for round_ in range(rounds):
        system = f"Session {round_}. " + SYSTEM * repeats  # 24: about 1,000 tokens
        question = PROBLEMS[round_ % 4].format(a=40 + round_, b=7)
        messages = [{"role": "system", "content": system}, {"role": "user", "content": question}]
        first = await one(api, model_id, question, 16, messages)
        follow = [
            *messages,
            {"role": "assistant", "content": first["text"]},
            {"role": "user", "content": "Check that answer again."},
        ]
        for arm_api, times in ((api, reused), (cold_api, cold)):
            measured = await one(arm_api, model_id, question, 4, follow)
            times.append(measured["ttft_s"])
            prompt_tokens = measured["prompt_tokens"]
    await api.close()
    await cold_api.close()
    return {
        "follow_up_prompt_tokens": prompt_tokens,
        "reused_ttft_s": [round(t, 3) for t in reused],
        "cold_ttft_s": [round(t, 3) for t in cold],
        "reused_ttft_median_s": round(statistics.median(reused), 3),
        "cold_ttft_median_s": round(statistics.median(cold), 3),
        "ratio": round(statistics.median(reused) / statistics.median(cold), 3),
    }


def _template(model: toolrun.Model) -> str | None:
    template = model.chat_template or getattr(
        getattr(model, "tokenizer", None), "chat_template", None
    )
    return template if isinstance(template, str) else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a random 2-layer Llama")
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--sequential", type=int, default=12, help="requests at concurrency 1")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--latency", type=float, default=0.05, help="the tool's seconds")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3, help="prefix-reuse repeats")
    parser.add_argument("--no-prefix-cache", action="store_true", help="for the throughput arms")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    if args.tiny:
        from transformers import AutoTokenizer

        from toolrun.backends.transformers import TransformersModel
        from toolrun.models import _resolve_folder
        from toolrun.testing import tiny_llama

        tokenizer = AutoTokenizer.from_pretrained(_resolve_folder(None))
        model: toolrun.Model = TransformersModel(tiny_llama(tokenizer), tokenizer)
    else:
        model = toolrun.load_model()

    @toolrun.tool(name="Calculator")
    async def calculator(expression: str) -> str:
        """Arithmetic, with a networked tool's latency."""
        await asyncio.sleep(args.latency)
        from toolrun.tools.calculator import calculator as real

        return str(real(expression))

    template = _template(model)
    prompts, plans = workload(model, template, args.requests)
    settings = ServerSettings(
        max_batch=64,
        chat_template=template,
        prefix_cache_bytes=0 if args.no_prefix_cache else 256 << 20,
        decoding={"logits_processor": [PlannedCalls(model, plans)]},
    )
    app = create_app(model, [calculator], settings=settings)
    model_id = app.state.engine.model_id
    arms = []
    cold_settings = ServerSettings(chat_template=template, prefix_cache_bytes=0)
    cold_app = create_app(model, [calculator], settings=cold_settings)
    with LiveServer(app) as live, LiveServer(cold_app) as cold:
        prefix = asyncio.run(
            prefix_reuse(live.url, cold.url, model_id, args.rounds, 8 if args.tiny else 24)
        )
        print(
            f"follow-up TTFT: reused {prefix['reused_ttft_median_s']} s, "
            f"cold {prefix['cold_ttft_median_s']} s, ratio {prefix['ratio']}"
        )
        asyncio.run(arm(live.url, model_id, prompts[:2], 1, 4))  # warm-up
        for clients in (1, 8, 64, 1):
            subset = prompts[: args.sequential] if clients == 1 else prompts
            measured = asyncio.run(arm(live.url, model_id, subset, clients, args.max_tokens))
            print(
                f"{clients:3d} clients, {measured['requests']} requests: "
                f"{measured['tokens_per_s']:7.2f} tok/s, TTFT median {measured['ttft_median_s']} s"
            )
            arms.append(measured)

    sequential = statistics.mean([arms[0]["tokens_per_s"], arms[-1]["tokens_per_s"]])
    alone = {r["prompt"]: r["text"] for a in (arms[0], arms[-1]) for r in a["results"]}
    summary = []
    for measured in arms[1:-1]:
        same = sum(alone.get(r["prompt"]) == r["text"] for r in measured["results"])
        compared = sum(r["prompt"] in alone for r in measured["results"])
        ids = {r["id"] for r in measured["results"]}
        planned = {q: plan[0][1] for q, plan in zip(prompts, plans.values(), strict=True)}
        own_call = all(
            r["calls"] and r["calls"][0].split('"')[3] in planned[r["prompt"]]
            for r in measured["results"]
        )
        summary.append(
            {
                "clients": measured["clients"],
                "tokens_per_s": measured["tokens_per_s"],
                "ratio_vs_sequential": round(measured["tokens_per_s"] / sequential, 2),
                "texts_identical_to_sequential": f"{same}/{compared}",
                "distinct_ids": len(ids) == measured["requests"],
                "every_call_its_own": own_call,
            }
        )
    for row in summary:
        print(json.dumps(row))
    report = {
        "model": "tiny random Llama" if args.tiny else "default (SmolLM2-135M-Instruct + adapter)",
        "backend": model.backend,
        "threads": args.threads,
        "tool_latency_s": args.latency,
        "max_tokens": args.max_tokens,
        "sequential_tokens_per_s": [arms[0]["tokens_per_s"], arms[-1]["tokens_per_s"]],
        "summary": summary,
        "prefix_reuse": prefix,
        "arms": [{k: v for k, v in a.items() if k != "results"} for a in arms],
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "load_average": os.getloadavg(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
