"""The llama.cpp backend's speed, as ratios against the baselines that matter.

    python benchmarks/bench_llamacpp.py [--tokens 64] [--repeats 9]

Default model, greedy, ``--tokens`` new tokens, same prompt everywhere:

1. toolrun on llama.cpp with no call / a plain ``llama_cpp.Llama`` completion (goal >= 0.95);
2. toolrun on llama.cpp / toolrun on transformers fp32 (expect >= 5x);
3. resuming after a 10-token result at 1,000 tokens of context / re-encoding that context
   (goal <= 0.2), on both backends, and what it costs a session to get the Llama back after a
   tool generated with the same model (its KV is saved and restored, not re-encoded).

Runs are interleaved and the median is kept, because the machine is shared. Each llama.cpp run
starts from an empty cache (``Llama.reset()``), so neither side reuses a cached prompt.
Writes benchmarks/results/llamacpp.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import llama_cpp
import torch
import transformers

import toolrun
from toolrun.backends.base import Model
from toolrun.backends.llamacpp import LlamaCppModel, load_llamacpp, new_llama
from toolrun.models import BASE_MODEL

PROMPT = (
    "<|im_start|>user\nWrite a short story about a lighthouse keeper who finds a message in a "
    "bottle.<|im_end|>\n<|im_start|>assistant\n"
)
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k_train" / "train.jsonl"
RESULTS = Path(__file__).resolve().parent / "results" / "llamacpp.json"


def timed(function: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    value = function()
    return time.perf_counter() - start, value


def generation_speed(model: LlamaCppModel, plain: Any, tokens: int, repeats: int) -> dict[str, Any]:
    """Tokens per second of toolrun's loop and of a plain completion, interleaved."""
    ours: list[float] = []
    theirs: list[float] = []
    texts: dict[str, str] = {}
    for _ in range(repeats):
        model.llama.reset()
        seconds, out = timed(lambda: toolrun.generate(PROMPT, model=model, max_new_tokens=tokens))
        ours.append(out.generated_tokens / seconds)
        texts["toolrun"] = out.text
        plain.reset()
        seconds, done = timed(
            lambda: plain.create_completion(PROMPT, max_tokens=tokens, temperature=0.0)
        )
        theirs.append(done["usage"]["completion_tokens"] / seconds)
        texts["plain"] = done["choices"][0]["text"]
    return {
        "toolrun_llamacpp_tok_s": statistics.median(ours),
        "plain_llamacpp_tok_s": statistics.median(theirs),
        "same_text": texts["toolrun"] == texts["plain"],
        "text": texts["toolrun"],
    }


def transformers_speed(tokens: int, repeats: int) -> dict[str, Any]:
    # The base by name: load_model() alone is base + adapter. torch threads: set by main().
    model = toolrun.load_model(BASE_MODEL, device="cpu", dtype="float32")
    toolrun.generate(PROMPT, model=model, max_new_tokens=4)  # warm-up
    rates = []
    out = None
    for _ in range(repeats):
        seconds, out = timed(lambda: toolrun.generate(PROMPT, model=model, max_new_tokens=tokens))
        rates.append(out.generated_tokens / seconds)
    assert out is not None
    return {
        "model": model,
        "toolrun_transformers_tok_s": statistics.median(rates),
        "text": out.text,
    }


def context_ids(model: Model, length: int) -> list[int]:
    rows = [json.loads(line) for line in DATA.read_text().splitlines()[:200]]
    text = "\n\n".join(f"Q: {r['question']}\nA: {r['answer']}" for r in rows)
    ids = model.encode(text)
    assert len(ids) >= length, "not enough text for the context"
    return ids[:length]


def resume_vs_reencode(model: Model, context: int, result: int, repeats: int) -> dict[str, Any]:
    """Feeding ``result`` tokens on top of ``context`` cached ones, against encoding them all."""
    ids = context_ids(model, context + result)
    head, tail = ids[:context], ids[context:]
    resume, reencode, swap = [], [], []
    llama = getattr(model, "llama", None)
    for _ in range(repeats):
        session = model.new_session()
        session.feed(head)
        resume.append(timed(lambda s=session: s.feed(tail))[0])
        if llama is not None:
            # Another session takes the Llama (a tool asking the model something), then gives it
            # back: the cost is saving and restoring this session's KV.
            other = model.new_session()
            other.feed(model.encode("The capital of France is"))
            other.close()
            start = time.perf_counter()
            session.feed(tail[:1])
            swap.append(time.perf_counter() - start)
            assert session.tokens_evaluated == session.tokens_fed  # type: ignore[attr-defined]
        session.close()
        if llama is not None:
            llama.reset()
        fresh = model.new_session()
        reencode.append(timed(lambda s=fresh: s.feed(ids))[0])
        fresh.close()
        if llama is not None:
            llama.reset()
    row: dict[str, Any] = {
        "resume_s": statistics.median(resume),
        "reencode_s": statistics.median(reencode),
    }
    row["ratio"] = row["resume_s"] / row["reencode_s"]
    if swap:
        row["resume_after_another_session_s"] = statistics.median(swap)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--context", type=int, default=1000)
    parser.add_argument("--result", type=int, default=10)
    args = parser.parse_args()

    model = load_llamacpp()
    threads = model.llama.n_threads
    plain = new_llama(
        model.llama.model_path,
        n_ctx=model.llama.n_ctx(),
        n_threads=threads,
        n_threads_batch=model.llama.n_threads_batch,
    )
    toolrun.generate(PROMPT, model=model, max_new_tokens=4)  # warm-up both
    plain.create_completion(PROMPT, max_tokens=4, temperature=0.0)

    # Same thread count for torch as for llama.cpp: on this shared 2-core machine, 2 torch threads
    # waiting on each other made transformers 20x slower (0.5 tok/s), which is no fair baseline.
    torch.set_num_threads(threads)
    speed = generation_speed(model, plain, args.tokens, args.repeats)
    resume_llama = resume_vs_reencode(model, args.context, args.result, args.repeats)
    hf = transformers_speed(args.tokens, max(2, args.repeats // 2))
    resume_hf = resume_vs_reencode(hf.pop("model"), args.context, args.result, 3)

    ratios = {
        "toolrun_llamacpp_over_plain_llamacpp": speed["toolrun_llamacpp_tok_s"]
        / speed["plain_llamacpp_tok_s"],
        "toolrun_llamacpp_over_toolrun_transformers_fp32": speed["toolrun_llamacpp_tok_s"]
        / hf["toolrun_transformers_tok_s"],
        "llamacpp_resume_over_reencode": resume_llama["ratio"],
        "transformers_resume_over_reencode": resume_hf["ratio"],
    }
    report = {
        "setup": {
            "model": model.name,
            "tokens": args.tokens,
            "repeats": args.repeats,
            "context": args.context,
            "result": args.result,
            "n_threads": threads,
            "torch_threads": torch.get_num_threads(),
            "cpus": os.cpu_count(),
            "machine": platform.processor() or platform.machine(),
            "llama_cpp_python": llama_cpp.__version__,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        },
        "generation": {k: v for k, v in speed.items() if k != "text"},
        "transformers": {k: v for k, v in hf.items() if k != "text"},
        "backends_same_greedy_text": speed["text"] == hf["text"],
        "resume_llamacpp": resume_llama,
        "resume_transformers": resume_hf,
        "ratios": ratios,
        "goals": {
            "toolrun_llamacpp_over_plain_llamacpp": ">= 0.95",
            "toolrun_llamacpp_over_toolrun_transformers_fp32": ">= 5 (expected)",
            "llamacpp_resume_over_reencode": "<= 0.2",
        },
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"toolrun on llama.cpp   {speed['toolrun_llamacpp_tok_s']:7.1f} tok/s")
    print(f"plain llama-cpp-python {speed['plain_llamacpp_tok_s']:7.1f} tok/s")
    print(f"toolrun on transformers fp32 {hf['toolrun_transformers_tok_s']:7.1f} tok/s")
    for name, value in ratios.items():
        print(f"{name:50s} {value:6.3f}")
    print(
        f"resume after another session used the Llama: "
        f"{resume_llama['resume_after_another_session_s'] * 1000:.1f} ms"
    )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
