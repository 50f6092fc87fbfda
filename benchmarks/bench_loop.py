"""Speed and memory of the decoding loop against plain transformers, as same-run ratios.

    python benchmarks/bench_loop.py            # default model, writes benchmarks/results/loop.json

1. tokens/s of toolrun.generate() with no call / tokens/s of model.generate(), greedy, same
   prompt, alternated over several rounds (goal >= 0.97): the median of the per-round ratios
   and their range;
2. time to resume after a call (a 10-token result spliced onto a 1,000-token context) / time to
   re-encode that whole context, as implementations without a cache splice do (goal <= 0.2);
3. memory of the default model at fp32, int8 and nf4, each in a fresh interpreter started
   before this process loads anything: the weights (the model's own accounting) and the
   process's peak resident memory while loading and generating, apart.

The peak is the kernel's high-water mark for the child's own address space (``VmHWM``), not
``ru_maxrss``: Linux carries ``ru_maxrss`` over fork and exec, so a child started from a parent
holding 1 GB reports at least 1 GB whatever it does (this benchmark once reported fp32 and nf4
with the same 1,152 MB peak that way).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

import toolrun
from toolrun.backends.transformers import TransformersModel

# Prose, so that the finetuned default writes no call and both arms decode the same tokens.
PROMPT = "The history of the city of Lyon, in France, goes back to Roman times, when"
RESULTS = Path(__file__).parent / "results"


def spread(values: list[float]) -> dict[str, float]:
    """Median and range of a same-run series."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


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
        "toolrun_tokens_per_s": spread(ours),
        "hf_generate_tokens_per_s": spread(theirs),
        "ratio": spread([a / b for a, b in zip(ours, theirs, strict=True)]),
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
        "splice_s": spread(splice),
        "reencode_s": spread(reencode),
        "ratio": spread([a / b for a, b in zip(splice, reencode, strict=True)]),
    }


def _status_mb(field: str) -> float:
    """A ``/proc/self/status`` memory field (VmRSS, VmHWM), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status (this benchmark needs Linux)")


def memory(quantize: str | None, new_tokens: int, rounds: int) -> dict:
    """In a fresh interpreter: load the default model, generate, report weights and peak RSS."""
    # after importing torch and toolrun, before loading: a fresh address space has only those
    import_mb, import_peak_mb = _status_mb("VmRSS"), _status_mb("VmHWM")
    model = toolrun.load_model(quantize=quantize)  # type: ignore[arg-type]
    assert isinstance(model, TransformersModel)
    loaded_mb = _status_mb("VmRSS")
    rates = []
    for _ in range(rounds):
        start = time.perf_counter()
        gen = toolrun.generate(PROMPT, model=model, max_new_tokens=new_tokens)
        rates.append(gen.generated_tokens / (time.perf_counter() - start))
    return {
        "quantize": quantize or "fp32",
        "weights_mb": model.model.get_memory_footprint() / 2**20,
        "rss_before_load_mb": import_mb,
        "rss_after_load_mb": loaded_mb,
        "peak_rss_mb": _status_mb("VmHWM"),
        "peak_before_load_mb": import_peak_mb,
        "tokens_per_s": spread(rates),
        "new_tokens": new_tokens,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (1: on a shared 2-core machine, 2 threads waiting on each other are "
        "up to 10x slower for small forwards; both arms use the same setting)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "loop.json")
    parser.add_argument("--memory-only", choices=["fp32", "int8", "nf4"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_only:
        mode = None if args.memory_only == "fp32" else args.memory_only
        print(json.dumps(memory(mode, 16, 3)))
        return

    # Memory first, each configuration in its own interpreter, while this one holds no model.
    rows = []
    for mode in ("fp32", "int8", "nf4"):
        out = subprocess.run(
            [sys.executable, __file__, "--memory-only", mode, "--threads", str(args.threads)],
            capture_output=True,
            text=True,
            check=True,
        )
        row = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(
            f"memory:   {mode:5s} weights {row['weights_mb']:.0f} MB, peak RSS "
            f"{row['peak_rss_mb']:.0f} MB ({row['rss_before_load_mb']:.0f} MB before loading), "
            f"{row['tokens_per_s']['median']:.1f} tok/s"
        )

    model = toolrun.load_model()
    assert isinstance(model, TransformersModel)
    report: dict[str, Any] = {  # JSON; the sections are read back below
        "command": " ".join(["python benchmarks/bench_loop.py", *sys.argv[1:]]),
        "device": str(model.device),
        "threads": torch.get_num_threads(),
        "load_average": os.getloadavg()[0],
        "model": model.name,
        "no_call_speed": tokens_per_second_ratio(model, args.new_tokens, args.rounds),
        "resume_after_call": resume_ratio(model, 1000, 10, args.rounds),
        "memory": rows,
    }
    speed, resume = report["no_call_speed"], report["resume_after_call"]
    print(
        f"no call:  toolrun {speed['toolrun_tokens_per_s']['median']:.1f} tok/s, "
        f"model.generate {speed['hf_generate_tokens_per_s']['median']:.1f} tok/s, "
        f"ratio {speed['ratio']['median']:.3f} ({speed['ratio']['min']:.3f}-"
        f"{speed['ratio']['max']:.3f}; goal >= 0.97), same tokens: {speed['same_tokens']}"
    )
    print(
        f"resume:   splice {resume['splice_s']['median'] * 1000:.1f} ms, re-encode "
        f"{resume['reencode_s']['median'] * 1000:.1f} ms, ratio {resume['ratio']['median']:.3f} "
        f"({resume['ratio']['min']:.3f}-{resume['ratio']['max']:.3f}; goal <= 0.2)"
    )
    report["load_average_end"] = os.getloadavg()[0]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
