"""Does the Hermes adapter call the Calculator in a chat? A quick check on held-out GSM8K *train*
problems (the last 200, never annotated for training; not an evaluation set).

    python scripts/check_hermes_model.py --n 15

Each problem is one user turn ``Question: ...``; the Calculator is listed by toolrun's Hermes
ChatML block, calls run at the end of the assistant's turn and the answer goes on in the next.
Prints: answers that made a call, calls that ran, answers whose next turn opens with the result
(the model read it), and final-answer accuracy ("The answer is n").
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import torch

import toolrun
from toolrun.models import BASE_MODEL
from toolrun.templates import HERMES_CHATML
from toolrun.toolformer.data import load_corpus
from toolrun.toolformer.sample import number_value

ADAPTER = Path(__file__).resolve().parent.parent / "toolrun/adapters/toolrun-smollm2-135m-hermes"
_ANSWER = re.compile(r"The answer is\s*\$?(-?[\d,]*\.?\d+)")


def run(model: toolrun.Model, records: list, max_new_tokens: int) -> dict:
    conversations = [
        [{"role": "user", "content": r.text[: r.start].removesuffix("\nAnswer: ")}] for r in records
    ]
    started = time.perf_counter()
    outs = toolrun.generate_batch(
        conversations,
        model=model,
        tools=["calculator"],
        call_format="hermes",
        chat_template=HERMES_CHATML,
        max_new_tokens=max_new_tokens,
    )
    with_call = ran = read = correct = 0
    for record, out in zip(records, outs, strict=True):
        with_call += bool(out.calls)
        ran += sum(1 for c in out.calls if c.error is None)
        turns = out.messages
        for i, message in enumerate(turns[:-1]):
            if message["role"] == "tool" and turns[i + 1]["role"] == "assistant":
                read += str(turns[i + 1]["content"]).startswith(str(message["content"]))
        said = " ".join(str(m["content"]) for m in turns if m["role"] == "assistant")
        gold = number_value(record.text.rsplit("The answer is", 1)[1])
        found = _ANSWER.search(said)
        got = number_value(found.group(1)) if found else None
        correct += got is not None and gold is not None and abs(got - gold) < 1e-6
    n = len(records)
    calls = sum(len(o.calls) for o in outs)
    return {
        "problems": n,
        "with_call": with_call / n,
        "calls": calls,
        "calls_ran": ran,
        "results_read_back": read,
        "accuracy": correct / n,
        "seconds": round(time.perf_counter() - started, 1),
        "first_outputs": [o.text for o in outs[:2]],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--adapter", default=str(ADAPTER))
    parser.add_argument("--data", default="../shared/data/gsm8k_train")
    parser.add_argument("--n", type=int, default=15)
    parser.add_argument("--max-new-tokens", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    records = load_corpus(args.data, last=200)[: args.n]
    tuned = toolrun.load_model(BASE_MODEL, adapter=args.adapter, device="cpu")
    print(json.dumps(run(tuned, records, args.max_new_tokens), indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
