"""Speed and memory of the decoding loop against plain transformers, as same-run ratios.

    python benchmarks/bench_loop.py            # default model, writes benchmarks/results/loop.json

1. tokens/s of toolrun.generate() with no call / tokens/s of model.generate(), greedy, same
   prompt, alternated over several rounds (goal >= 0.97);
2. time to resume after a call (a 10-token result spliced onto a 1,000-token context) / time to
   re-encode that whole context, as implementations without a cache splice do (goal <= 0.2);
3. peak memory of the default model at fp32, int8 and nf4 (each in a fresh process).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

import toolrun
from toolrun.backends.transformers import TransformersModel

# Prose, so that the finetuned default writes no call and both arms decode the same tokens.
PROMPT = "The history of the city of Lyon, in France, goes back to Roman times, when"
RESULTS = Path(__file__).parent / "results"


def tokens_per_second_ratio(model: TransformersModel, new_tokens: int, rounds: int) -> dict:
    hf, tokenizer = model.model, model.tokenizer
    ids = tokenizer(PROMPT, return_tensors="pt").input_ids.to(model.device)
    eos = hf.generation_config.eos_token_id
    ours, theirs = [], []
    toolrun.generate(PROMPT, model=model, max_new_tokens=4)  # warm up both paths
    hf.generate(ids, do_sample=False, max_new_tokens=4)
    for _ in range(rounds):
        start = time.perf_counter()
        out = hf.generate(
            ids,
            do_sample=False,
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            pad_token_id=eos,
        )
        theirs.append((out.shape[1] - ids.shape[1]) / (time.perf_counter() - start))
        start = time.perf_counter()
        # The same tokens: EOS is banned in HF (min_new_tokens), so ban it here too.
        gen = toolrun.generate(
            PROMPT, model=model, max_new_tokens=new_tokens, logits_processor=[_BanEos(eos)]
        )
        ours.append(gen.generated_tokens / (time.perf_counter() - start))
    same = gen.token_ids == out[0, ids.shape[1] :].tolist()
    return {
        "toolrun_tokens_per_s": statistics.median(ours),
        "hf_generate_tokens_per_s": statistics.median(theirs),
        "ratio": statistics.median(ours) / statistics.median(theirs),
        "same_tokens": same,
        "calls": len(gen.calls),
        "new_tokens": new_tokens,
        "rounds": rounds,
    }


class _BanEos:
    def __init__(self, eos: int) -> None:
        self.eos = eos

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        scores[:, self.eos] = float("-inf")
        return scores


def resume_ratio(model: TransformersModel, context: int, result: int, rounds: int) -> dict:
    torch.manual_seed(0)
    context_ids = torch.randint(100, model.vocab_size - 100, (context,)).tolist()
    result_ids = model.encode(" " + "7" * (result - 2) + "]")[:result]
    splice, reencode = [], []
    for _ in range(rounds):
        session = model.new_session()
        session.feed(context_ids)
        start = time.perf_counter()
        session.feed(result_ids)  # what toolrun does after a call
        splice.append(time.perf_counter() - start)
        start = time.perf_counter()
        model.new_session().feed(context_ids + result_ids)  # what a re-encoding runtime does
        reencode.append(time.perf_counter() - start)
    return {
        "context_tokens": context,
        "result_tokens": len(result_ids),
        "splice_s": statistics.median(splice),
        "reencode_s": statistics.median(reencode),
        "ratio": statistics.median(splice) / statistics.median(reencode),
    }


def memory(quantize: str | None) -> dict:
    """Load the default model in this process and report its footprint and the peak RSS."""
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    model = toolrun.load_model(quantize=quantize)  # type: ignore[arg-type]
    assert isinstance(model, TransformersModel)
    gen = toolrun.generate(PROMPT, model=model, max_new_tokens=16)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "quantize": quantize or "fp32",
        "weights_mb": model.model.get_memory_footprint() / 2**20,
        "peak_rss_mb": peak / 1024,
        "peak_rss_over_import_mb": (peak - base) / 1024,
        "tokens_per_s": gen.tokens_per_second,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (1: on a shared 2-core machine, 2 threads waiting on each other are "
        "up to 10x slower for small forwards; both arms use the same setting)",
    )
    parser.add_argument("--memory-only", choices=["fp32", "int8", "nf4"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_only:
        print(json.dumps(memory(None if args.memory_only == "fp32" else args.memory_only)))
        return

    model = toolrun.load_model()
    assert isinstance(model, TransformersModel)
    report = {
        "device": str(model.device),
        "threads": torch.get_num_threads(),
        "model": model.name,
        "no_call_speed": tokens_per_second_ratio(model, args.new_tokens, args.rounds),
        "resume_after_call": resume_ratio(model, 1000, 10, args.rounds),
    }
    speed, resume = report["no_call_speed"], report["resume_after_call"]
    print(
        f"no call:  toolrun {speed['toolrun_tokens_per_s']:.1f} tok/s, "
        f"model.generate {speed['hf_generate_tokens_per_s']:.1f} tok/s, "
        f"ratio {speed['ratio']:.3f} (goal >= 0.97), same tokens: {speed['same_tokens']}"
    )
    print(
        f"resume:   splice {resume['splice_s'] * 1000:.1f} ms, re-encode "
        f"{resume['reencode_s'] * 1000:.1f} ms, ratio {resume['ratio']:.3f} (goal <= 0.2)"
    )
    report["memory"] = []
    for mode in ("fp32", "int8", "nf4"):
        out = subprocess.run(
            [sys.executable, __file__, "--memory-only", mode, "--threads", str(args.threads)],
            capture_output=True,
            text=True,
            check=True,
        )
        row = json.loads(out.stdout.strip().splitlines()[-1])
        report["memory"].append(row)
        print(
            f"memory:   {mode:5s} weights {row['weights_mb']:.0f} MB, "
            f"peak RSS {row['peak_rss_mb']:.0f} MB, {row['tokens_per_s']:.1f} tok/s"
        )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "loop.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
