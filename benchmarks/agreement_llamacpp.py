"""How often the two backends write the same greedy text, calls and results included.

    python benchmarks/agreement_llamacpp.py [--adapter models/...] [--prompts 50] [--tokens 48]

The prompts are GSM8K *training* questions (../shared/data, never the evaluation sets). Both
backends run toolrun's loop with the calculator, greedy; llama.cpp runs the GGUF (the adapter
merged in, changed tensors in Q8_0), transformers the same weights dequantised to fp32.
Differences come from quantisation and float arithmetic only. Results are added to
benchmarks/results/llamacpp_agreement.json under the adapter's name ("base" without one).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import toolrun
from toolrun.backends.llamacpp import load_llamacpp
from toolrun.models import BASE_MODEL

DATA = next(  # ../shared next to the checkout (a worktree sits one level deeper)
    (
        parent / "shared" / "data" / "gsm8k_train" / "train.jsonl"
        for parent in Path(__file__).resolve().parents
        if (parent / "shared" / "data" / "gsm8k_train").is_dir()
    ),
    Path("shared/data/gsm8k_train/train.jsonl"),
)
RESULTS = Path(__file__).resolve().parent / "results" / "llamacpp_agreement.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adapter", type=Path, default=None)
    parser.add_argument("--prompts", type=int, default=50)
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument("--template", default="Question: {question}\nAnswer:")
    args = parser.parse_args()

    rows = [json.loads(line) for line in DATA.read_text().splitlines()[: args.prompts]]
    prompts = [args.template.format(question=row["question"]) for row in rows]
    started = time.perf_counter()
    llama = load_llamacpp(adapter=args.adapter)
    merge_s = time.perf_counter() - started
    torch.set_num_threads(llama.llama.n_threads)  # two spinning pools on 2 shared cores crawl
    # The base model by name: load_model() alone now means base + the default adapter.
    hf = toolrun.load_model(BASE_MODEL, adapter=args.adapter, device="cpu", dtype="float32")

    same = same_calls = 0
    prefix_chars: list[float] = []
    examples: list[dict[str, str]] = []
    for prompt in prompts:
        a = toolrun.generate(prompt, model=llama, tools=["calculator"], max_new_tokens=args.tokens)
        b = toolrun.generate(prompt, model=hf, tools=["calculator"], max_new_tokens=args.tokens)
        same += a.text == b.text
        same_calls += [(c.name, c.arguments_text) for c in a.calls] == [
            (c.name, c.arguments_text) for c in b.calls
        ]
        common = _shared_prefix(a.text, b.text)
        prefix_chars.append(common / max(len(a.text), len(b.text), 1))
        if a.text != b.text and len(examples) < 5:
            examples.append({"prompt": prompt, "llama.cpp": a.text, "transformers": b.text})
    n = len(prompts)
    report = {
        "prompts": n,
        "tokens": args.tokens,
        "template": args.template,
        "identical_text": same / n,
        "identical_calls": same_calls / n,
        "mean_shared_prefix": sum(prefix_chars) / n,
        "merge_and_load_s": merge_s,
        "examples": examples,
    }
    key = args.adapter.name if args.adapter else "base"
    existing = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    existing[key] = report
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(existing, indent=2) + "\n")
    print(
        f"{key}: identical text {same}/{n}, identical calls {same_calls}/{n}, "
        f"mean shared prefix {report['mean_shared_prefix']:.2f}"
    )


def _shared_prefix(a: str, b: str) -> int:
    return next(
        (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
    )


if __name__ == "__main__":
    main()
