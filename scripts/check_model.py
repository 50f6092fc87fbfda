"""Does the finetuned model call the Calculator, and does it help? A quick check on held-out
GSM8K *train* problems (the last 200, never annotated for training; not an evaluation set).

    python scripts/check_model.py --adapter toolrun/adapters/toolrun-smollm2-135m-calc --n 20

Prints, for the base model and base+adapter (tools on for both): the share of answers that made
a call, the share of calls whose arguments parsed and ran, and final-answer accuracy.
"""

from __future__ import annotations

import argparse
import json
import re
import time

import torch

import toolrun
from toolrun.models import BASE_MODEL
from toolrun.toolformer.data import load_corpus
from toolrun.toolformer.sample import number_value

_ANSWER = re.compile(r"The answer is\s*\$?(-?[\d,]*\.?\d+)")


def run(model: toolrun.Model, records: list, max_new_tokens: int) -> dict:
    calls = ok = correct = 0
    samples = []
    started = time.perf_counter()
    for record in records:
        question = record.text[: record.start].rstrip(" ")  # "...\nAnswer:"
        gold = number_value(record.text.rsplit("The answer is", 1)[1])
        out = toolrun.generate(
            question,
            model=model,
            tools=["calculator"],
            max_new_tokens=max_new_tokens,
            stop=["\nQuestion:"],
        )
        calls += bool(out.calls)
        ok += sum(1 for c in out.calls if c.error is None)
        found = _ANSWER.search(out.text)
        got = number_value(found.group(1)) if found else None
        correct += got is not None and gold is not None and abs(got - gold) < 1e-6
        samples.append(out.text)
    n = len(records)
    return {
        "problems": n,
        "with_call": calls / n,
        "calls_ok": ok,
        "accuracy": correct / n,
        "seconds": round(time.perf_counter() - started, 1),
        "first_outputs": samples[:3],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--adapter", required=True)
    parser.add_argument("--data", default="../shared/data/gsm8k_train")
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--max-new-tokens", type=int, default=120)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-base", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    records = load_corpus(args.data, last=200)[: args.n]
    report = {}
    if not args.skip_base:
        base = toolrun.load_model(BASE_MODEL, device="cpu")
        report["base"] = run(base, records, args.max_new_tokens)
    tuned = toolrun.load_model(adapter=args.adapter, device="cpu")
    report["finetuned"] = run(tuned, records, args.max_new_tokens)
    print(json.dumps(report, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
