"""The llama.cpp backend's speed, as same-run ratios against the baselines that matter.

    python benchmarks/bench_llamacpp.py [--threads 1] [--repeats 5] [--tokens 64]

Every arm uses the same thread count (``--threads``; torch too). Arms are interleaved, each
repeat runs every arm once, and the median and range of the ratios are kept: the machine is
shared (the load average is recorded). Writes benchmarks/results/llamacpp.json.

1. toolrun on llama.cpp with no call / a plain ``llama_cpp.Llama`` completion, on the base GGUF
   (goal >= 0.97, same text), with the per-token cost of toolrun's loop measured apart:
   ``engine`` is the bare decoding context fed the argmax, so ``toolrun - engine`` is the loop;
2. the first generation of a freshly loaded model / the later ones;
3. the default model (base + adapter): the default engine (``load_model()``, llama.cpp) /
   transformers fp32 (goal >= 4x);
4. re-encoding 1,000 tokens: llama.cpp / transformers fp32, both models (goal < 1), and
   resuming after a 10-token result at that context / re-encoding it;
5. ``generate_batch`` of 16 word problems, each calling a 50 ms calculator once or twice /
   the same prompts one ``generate()`` after another, on the default engine (goal >= 3x), and
   how many texts are identical;
6. the default model with llama.cpp's extra weight buffers (AMX on this CPU, where the build
   allows it: see the Makefile) / without them: re-encoding ``--context`` tokens and decoding
   ``--tokens`` tokens on the bare engine.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import platform
import pstats
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import llama_cpp
import torch
import transformers

import toolrun
from toolrun.backends.base import Model
from toolrun.backends.llamacpp import (
    LlamaCppModel,
    extra_buffers_work,
    load_llamacpp,
    new_llama,
)
from toolrun.testing import PlannedCalls

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_batch import workload

PROMPT = (
    "<|im_start|>user\nWrite a short story about a lighthouse keeper who finds a message in a "
    "bottle.<|im_end|>\n<|im_start|>assistant\n"
)
DATA = next(  # ../shared next to the checkout (a worktree sits one level deeper)
    (
        parent / "shared" / "data" / "gsm8k_train" / "train.jsonl"
        for parent in Path(__file__).resolve().parents
        if (parent / "shared" / "data" / "gsm8k_train").is_dir()
    ),
    Path("shared/data/gsm8k_train/train.jsonl"),
)
RESULTS = Path(__file__).resolve().parent / "results" / "llamacpp.json"


def timed(function: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = function()
    return time.perf_counter() - start, value


def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def engine_rate(model: LlamaCppModel, prompt_ids: list[int], tokens: int) -> float:
    """Tokens/s of the bare decoding context: prefill, then feed the argmax, nothing else."""
    sequences = model.sequences
    seq = sequences.open()
    try:
        start = time.perf_counter()
        logits = sequences.decode({seq: prompt_ids})[seq]
        for _ in range(tokens - 1):
            logits = sequences.decode({seq: [int(logits.argmax())]})[seq]
        return tokens / (time.perf_counter() - start)
    finally:
        sequences.release(seq)


def against_plain(model: LlamaCppModel, tokens: int, repeats: int) -> dict[str, Any]:
    """toolrun.generate vs a plain completion vs the bare engine, interleaved."""
    plain = new_llama(
        model.llama.model_path,
        n_ctx=model.n_ctx,
        n_threads=model.n_threads,
        n_threads_batch=model.n_threads_batch,
    )
    plain.create_completion(PROMPT, max_tokens=4, temperature=0.0)  # warm up
    ours, theirs, bare, ratios = [], [], [], []
    text = plain_text = ""
    prompt_ids = model.encode(PROMPT)
    for _ in range(repeats):
        seconds, out = timed(lambda: toolrun.generate(PROMPT, model=model, max_new_tokens=tokens))
        ours.append(out.generated_tokens / seconds)
        text = out.text
        plain.reset()
        seconds, done = timed(
            lambda: plain.create_completion(PROMPT, max_tokens=tokens, temperature=0.0)
        )
        theirs.append(done["usage"]["completion_tokens"] / seconds)
        plain_text = done["choices"][0]["text"]
        bare.append(engine_rate(model, prompt_ids, out.generated_tokens))
        ratios.append(ours[-1] / theirs[-1])
    loop_ms = 1000 * (1 / statistics.median(ours) - 1 / statistics.median(bare))
    return {
        "toolrun_tok_s": spread(ours),
        "plain_llama_cpp_python_tok_s": spread(theirs),
        "engine_tok_s": spread(bare),
        "toolrun_over_plain": spread(ratios),
        "loop_ms_per_token": loop_ms,
        "same_text": text == plain_text,
    }


def loop_profile(model: LlamaCppModel, tokens: int) -> list[dict[str, Any]]:
    """Where toolrun's own per-token time goes (cProfile, forward passes excluded)."""
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(3):
        toolrun.generate(PROMPT, model=model, max_new_tokens=tokens)
    profile.disable()
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    rows = []
    for (file, line, name), (_, calls, own, cumulative, _) in stats.items():
        if "toolrun" not in file or name in ("generate", "stream", "_decode", "<genexpr>"):
            continue
        rows.append(
            {
                "function": f"{Path(file).name}:{line}:{name}",
                "calls": calls,
                "us_per_token": 1e6 * cumulative / (3 * tokens),
                "own_us_per_token": 1e6 * own / (3 * tokens),
            }
        )
    return sorted(rows, key=lambda r: -r["us_per_token"])[:12]


def first_generation(tokens: int, threads: int, repeats: int) -> dict[str, Any]:
    """A freshly loaded model's first generation against its next ones."""
    firsts: list[float] = []
    laters: list[float] = []
    for _ in range(repeats):
        fresh = load_llamacpp(n_threads=threads)
        for rates in (firsts, laters):
            seconds, out = timed(
                # mypy cannot infer a lambda with a default argument (python/mypy#15459)
                lambda m=fresh: toolrun.generate(PROMPT, model=m, max_new_tokens=tokens)  # type: ignore[misc]
            )
            rates.append(out.generated_tokens / seconds)
    ratios = [a / b for a, b in zip(firsts, laters, strict=True)]
    return {"first_tok_s": spread(firsts), "later_tok_s": spread(laters), "ratio": spread(ratios)}


def default_engine_vs_transformers(tokens: int, repeats: int) -> dict[str, Any]:
    """The default model on the default engine against the same model on transformers fp32."""
    fast = toolrun.load_model()
    slow = toolrun.load_model(backend="transformers", dtype="float32")
    prompt = "Question: Tom reads 23 pages a day for 17 days. How many pages does he read?\nAnswer:"
    for model in (fast, slow):
        toolrun.generate(prompt, model=model, max_new_tokens=4)
    rates: dict[str, list[float]] = {"llama.cpp": [], "transformers": []}
    for _ in range(repeats):
        for key, model in (("llama.cpp", fast), ("transformers", slow)):
            # No call: the finetuned default would call the calculator on this prompt.
            seconds, out = timed(
                # mypy cannot infer a lambda with a default argument (python/mypy#15459)
                lambda m=model: toolrun.generate(  # type: ignore[misc]
                    prompt, model=m, max_new_tokens=tokens, allow_calls=False
                )
            )
            rates[key].append(out.generated_tokens / seconds)
    ratios = [a / b for a, b in zip(rates["llama.cpp"], rates["transformers"], strict=True)]
    return {
        "default_engine": repr(fast),
        "llama_cpp_tok_s": spread(rates["llama.cpp"]),
        "transformers_fp32_tok_s": spread(rates["transformers"]),
        "ratio": spread(ratios),
        "models": (fast, slow),
    }


def context_ids(model: Model, length: int) -> list[int]:
    rows = [json.loads(line) for line in DATA.read_text().splitlines()[:200]]
    text = "\n\n".join(f"Q: {r['question']}\nA: {r['answer']}" for r in rows)
    ids = model.encode(text)
    assert len(ids) >= length, "not enough text for the context"
    return ids[:length]


def prefill_and_resume(
    arms: dict[str, Model], context: int, result: int, repeats: int
) -> dict[str, Any]:
    """Re-encoding ``context + result`` tokens, and resuming with ``result`` on ``context``."""
    reencode: dict[str, list[float]] = {k: [] for k in arms}
    resume: dict[str, list[float]] = {k: [] for k in arms}
    for _ in range(repeats):
        for key, model in arms.items():
            ids = context_ids(model, context + result)
            fresh = model.new_session()
            # mypy cannot infer a lambda with a default argument (python/mypy#15459), twice here
            reencode[key].append(timed(lambda s=fresh, i=ids: s.feed(i))[0])  # type: ignore[misc]
            fresh.close()
            session = model.new_session()
            session.feed(ids[:context])
            resume[key].append(timed(lambda s=session, i=ids: s.feed(i[context:]))[0])  # type: ignore[misc]
            session.close()
    out: dict[str, Any] = {"context": context, "result": result}
    for key in arms:
        out[key] = {
            "reencode_s": spread(reencode[key]),
            "prompt_tok_s": (context + result) / statistics.median(reencode[key]),
            "resume_s": spread(resume[key]),
            "resume_over_reencode": statistics.median(resume[key])
            / statistics.median(reencode[key]),
        }
    return out


def extra_buffers_on_off(
    model: LlamaCppModel, context: int, tokens: int, repeats: int
) -> dict[str, Any]:
    """``model`` as loaded (llama.cpp's extra weight buffers where they work) / without them."""
    path = Path(model.llama.model_path)
    if not extra_buffers_work(path):
        return {"skipped": "llama.cpp's extra buffers (AMX) do not work with this build here"}
    without = load_llamacpp(path, n_threads=model.n_threads, extra_buffers=False)
    arms = {"with": model, "without": without}
    prefill: dict[str, list[float]] = {k: [] for k in arms}
    decode: dict[str, list[float]] = {k: [] for k in arms}
    ids = context_ids(model, context)
    prompt_ids = model.encode(PROMPT)
    for _ in range(repeats):
        for key, arm in arms.items():
            session = arm.new_session()
            # mypy cannot infer a lambda with a default argument (python/mypy#15459)
            prefill[key].append(timed(lambda s=session: s.feed(ids))[0])  # type: ignore[misc]
            session.close()
            decode[key].append(engine_rate(arm, prompt_ids, tokens))
    return {
        "system_info": llama_cpp.llama_print_system_info().decode().strip(),
        "context": context,
        "tokens": tokens,
        "prefill_s": {k: spread(v) for k, v in prefill.items()},
        "decode_tok_s": {k: spread(v) for k, v in decode.items()},
        "prefill_speedup": statistics.median(prefill["without"])
        / statistics.median(prefill["with"]),
        "decode_speedup": statistics.median(decode["with"]) / statistics.median(decode["without"]),
    }


@toolrun.tool(name="Calculator")
def calculator(expression: str) -> str:
    """Integer arithmetic after 50 ms (a tool with latency)."""
    time.sleep(0.05)
    left, op, right = expression.split()[:3]
    a, b = int(left), int(right)
    return str(a + b if op == "+" else a - b if op == "-" else a * b)


def batch_vs_loop(model: Model, count: int, tokens: int, repeats: int) -> dict[str, Any]:
    prompts, plans = workload(count)
    options: dict[str, Any] = {  # generate()'s options, as generate_batch() takes them
        "max_new_tokens": tokens,
        "logits_processor": [PlannedCalls(model, plans)],
    }
    toolrun.generate_batch(prompts[:2], model=model, tools=[calculator], **options)  # warm up
    batched, looped, ratios = [], [], []
    identical = 0
    for _ in range(repeats):
        seconds, together = timed(
            lambda: toolrun.generate_batch(prompts, model=model, tools=[calculator], **options)
        )
        batched.append(sum(g.generated_tokens for g in together) / seconds)
        seconds, alone = timed(
            lambda: [
                toolrun.generate(p, model=model, tools=[calculator], **options) for p in prompts
            ]
        )
        looped.append(sum(g.generated_tokens for g in alone) / seconds)
        ratios.append(batched[-1] / looped[-1])
        identical = sum(a.text == b.text for a, b in zip(together, alone, strict=True))
    return {
        "prompts": count,
        "tokens": tokens,
        "tool_latency_s": 0.05,
        "calls": sum(len(g.calls) for g in together),
        "batch_tok_s": spread(batched),
        "loop_tok_s": spread(looped),
        "ratio": spread(ratios),
        "identical_texts": identical,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--context", type=int, default=1000)
    parser.add_argument("--result", type=int, default=10)
    parser.add_argument("--prompts", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()

    base = load_llamacpp(n_threads=args.threads)
    print("toolrun vs plain llama-cpp-python", flush=True)
    plain = against_plain(base, args.tokens, args.repeats)
    profile = loop_profile(base, args.tokens)
    print("first generation", flush=True)
    first = first_generation(args.tokens, args.threads, min(3, args.repeats))
    print("default engine vs transformers", flush=True)
    engines = default_engine_vs_transformers(args.tokens, min(3, args.repeats))
    fast, slow = engines.pop("models")
    print("prefill and resume", flush=True)
    base_hf = toolrun.load_model(toolrun.BASE_MODEL, backend="transformers", dtype="float32")
    prefill = prefill_and_resume(
        {
            "llama.cpp base (Q4_1)": base,
            "llama.cpp default (merged, Q8_0 layers)": fast,
            "transformers fp32 base": base_hf,
            "transformers fp32 default": slow,
        },
        args.context,
        args.result,
        min(3, args.repeats),
    )
    print("batch vs loop", flush=True)
    batch = batch_vs_loop(fast, args.prompts, 48, min(3, args.repeats))
    print("extra buffers (AMX) on vs off", flush=True)
    assert isinstance(fast, LlamaCppModel)
    buffers = extra_buffers_on_off(fast, args.context, args.tokens, min(3, args.repeats))

    report = {
        "setup": {
            "command": "python benchmarks/bench_llamacpp.py " + " ".join(sys.argv[1:]),
            "threads": args.threads,
            "tokens": args.tokens,
            "repeats": args.repeats,
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
            "cpus": os.cpu_count(),
            "machine": platform.processor() or platform.machine(),
            "llama_cpp_python": llama_cpp.__version__,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        },
        "generation_vs_plain": plain,
        "loop_profile": profile,
        "first_generation": first,
        "default_engine_vs_transformers": engines,
        "prefill_and_resume": prefill,
        "batch_vs_loop": batch,
        "extra_buffers_on_over_off": buffers,
        "goals": {
            "toolrun_over_plain": ">= 0.97",
            "default_engine_over_transformers_fp32": ">= 4",
            "llama_cpp_reencode_1000_over_transformers": "< 1",
            "batch_16_with_50ms_tool_over_loop": ">= 3",
        },
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "loop_profile"}, indent=1))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
